//! Keyset pagination: `?limit=` (default 20, max 100) and an opaque `?cursor=`.
//!
//! A cursor is the sort key of the last item of a page, versioned and base64url-encoded so
//! clients treat it as opaque. Lists ordered by a UUIDv7 id use the id alone as the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::InvalidInput;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;
/// Longest cursor accepted from a client (a cursor is a short key, never a payload).
const MAX_CURSOR_LEN: usize = 512;
const CURSOR_VERSION: &str = "v1:";

/// An opaque position in a list: the sort key of the last item already seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor after the item whose sort key is `key`.
    pub fn after(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The sort key inside.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.0
    }

    /// The opaque wire form.
    #[must_use]
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{}", self.0))
    }

    /// Reads the wire form back.
    ///
    /// # Errors
    /// [`InvalidInput`] on the `cursor` field when the string was not made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Result<Self, InvalidInput> {
        let invalid = || InvalidInput::field("cursor", "is not a valid cursor");
        if s.len() > MAX_CURSOR_LEN {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        text.strip_prefix(CURSOR_VERSION)
            .map(|k| Self(k.to_owned()))
            .ok_or_else(invalid)
    }
}

/// What a client asked for: how many, and after which cursor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageRequest {
    limit: u32,
    after: Option<Cursor>,
}

impl PageRequest {
    /// The first page of `limit` items.
    ///
    /// # Errors
    /// [`InvalidInput`] on `limit` when it is 0 or above [`MAX_LIMIT`].
    pub fn first(limit: u32) -> Result<Self, InvalidInput> {
        Self::parse(Some(limit), None)
    }

    /// Validates the raw query values.
    ///
    /// # Errors
    /// [`InvalidInput`] when `limit` is outside `1..=100` or `cursor` is not a cursor.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, InvalidInput> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(InvalidInput::field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(Cursor::decode(c)?),
        };
        Ok(Self { limit, after })
    }

    /// The page size.
    #[must_use]
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The cursor to continue after, if any.
    #[must_use]
    pub const fn after(&self) -> Option<&Cursor> {
        self.after.as_ref()
    }

    /// The cursor's key as a UUID, for lists ordered by a v7 id (most lists).
    ///
    /// # Errors
    /// [`InvalidInput`] on `cursor` when the key is not a UUID (a cursor of another list, or
    /// forged).
    pub fn after_uuid(&self) -> Result<Option<uuid::Uuid>, InvalidInput> {
        self.after
            .as_ref()
            .map(|c| {
                uuid::Uuid::try_parse(c.key())
                    .map_err(|_| InvalidInput::field("cursor", "is not a valid cursor"))
            })
            .transpose()
    }

    /// The next page after `cursor`, same size.
    #[must_use]
    pub fn next(&self, cursor: Cursor) -> Self {
        Self {
            limit: self.limit,
            after: Some(cursor),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only tells that there is
    /// more, and the cursor is the key of the last row kept.
    pub fn from_overfetch(
        mut rows: Vec<T>,
        request: &PageRequest,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let limit = request.limit() as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|last| Cursor::after(key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// Maps the items, keeping the cursor.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_is_opaque() {
        let c = Cursor::after("0190f3a2-0000-7000-8000-000000000000");
        let wire = c.encode();
        assert!(
            !wire.contains("0190f3a2"),
            "the wire form must not show the key"
        );
        assert_eq!(Cursor::decode(&wire), Ok(c));
    }

    #[test]
    fn bad_cursors_are_field_errors() {
        for bad in ["%%%", "aGVsbG8", &"A".repeat(600)] {
            let err = Cursor::decode(bad).expect_err(bad);
            assert_eq!(err.0[0].field, "cursor");
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageRequest::parse(None, None).map(|p| p.limit()), Ok(20));
        assert_eq!(
            PageRequest::parse(Some(100), None).map(|p| p.limit()),
            Ok(100)
        );
        for bad in [0, 101, u32::MAX] {
            let err = PageRequest::parse(Some(bad), None).expect_err("out of range");
            assert_eq!(err.0[0].field, "limit");
        }
    }

    #[test]
    fn after_uuid_reads_id_cursors_and_refuses_others() {
        let first = PageRequest::first(5).expect("page");
        assert_eq!(first.after_uuid(), Ok(None));
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            first.next(Cursor::after(id.to_string())).after_uuid(),
            Ok(Some(id))
        );
        let err = first
            .next(Cursor::after("acme"))
            .after_uuid()
            .expect_err("not an id");
        assert_eq!(err.0[0].field, "cursor");
    }

    #[test]
    fn overfetch_sets_cursor_only_when_more() {
        let req = PageRequest::first(2).expect("valid");
        let page = Page::from_overfetch(vec![1, 2, 3], &req, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor, Some(Cursor::after("2")));
        let last = Page::from_overfetch(vec![1, 2], &req, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }
}
