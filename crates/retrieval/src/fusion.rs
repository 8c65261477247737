//! How `hybrid` search fuses its keyword and vector rankings: the fusion itself
//! ([`Fusion::fuse`]) and the fusion of each embedding model (`retrieval.fusion`). The types
//! a query carries ([`Fusion`], [`FusionMethod`]) are in `model.rs` with the query's others.

use std::collections::HashMap;

use documents::ChunkId;

use crate::model::{Candidate, Fusion, FusionMethod, Space, SpaceStatus, sort_candidates};

/// Reciprocal rank fusion's constant (Cormack et al. 2009).
pub const RRF_K: f32 = 60.0;
/// `minmax`'s lowest score: a chunk found by a leg scores above 0 even when it is last in every
/// list it is in (the sum is mapped onto `FLOOR..=1`, which keeps its order).
const MINMAX_FLOOR: f32 = 0.01;

impl Fusion {
    /// Fuses the vector and keyword rankings (each best first) into one, best first, scored
    /// 0..1 (1.0: first in every list of positive weight, or the top score of each).
    #[must_use]
    pub fn fuse(&self, vector: &[Candidate], keyword: &[Candidate]) -> Vec<Candidate> {
        let lists = [(vector, self.vector), (keyword, self.keyword)];
        let total: f32 = lists.iter().map(|(_, w)| *w).sum::<f32>().max(f32::EPSILON);
        let mut scores: HashMap<ChunkId, f32> = HashMap::new();
        for (list, weight) in lists {
            if weight <= 0.0 {
                continue;
            }
            match self.method {
                FusionMethod::Rrf => {
                    for (rank, c) in list.iter().enumerate() {
                        #[allow(clippy::cast_precision_loss)] // ranks are small
                        let add = weight / (RRF_K + 1.0 + rank as f32);
                        *scores.entry(c.chunk_id).or_default() += add;
                    }
                }
                FusionMethod::MinMax => {
                    let (lo, hi) = list
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |a, c| {
                            (a.0.min(c.score), a.1.max(c.score))
                        });
                    let span = hi - lo;
                    for c in list {
                        let norm = if span > f32::EPSILON {
                            (c.score - lo) / span
                        } else {
                            1.0
                        };
                        *scores.entry(c.chunk_id).or_default() += weight * norm;
                    }
                }
            }
        }
        let best = match self.method {
            FusionMethod::Rrf => total / (RRF_K + 1.0),
            FusionMethod::MinMax => total,
        };
        let mut fused: Vec<Candidate> = scores
            .into_iter()
            .map(|(chunk_id, s)| Candidate {
                chunk_id,
                score: match self.method {
                    FusionMethod::Rrf => s / best,
                    FusionMethod::MinMax => MINMAX_FLOOR + (1.0 - MINMAX_FLOOR) * s / best,
                },
            })
            .collect();
        sort_candidates(&mut fused);
        fused
    }
}

/// The fusion of each embedding model: `retrieval.fusion` (the default) and its `models`
/// overrides, so a model whose vectors are better gets a larger vote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusionSettings {
    default: Fusion,
    by_model: HashMap<String, Fusion>,
}

impl FusionSettings {
    /// The default fusion and the overrides per model name.
    #[must_use]
    pub fn new(default: Fusion, by_model: HashMap<String, Fusion>) -> Self {
        Self { default, by_model }
    }

    /// The fusion of `model` (the default when it has none, or when the vector leg searched
    /// spaces of several models: `None`).
    #[must_use]
    pub fn for_model(&self, model: Option<&str>) -> Fusion {
        model
            .and_then(|m| self.by_model.get(m))
            .copied()
            .unwrap_or(self.default)
    }

    /// The one rule of `hybrid`'s fusion, for search and evaluation alike: the fusion of the
    /// model of the scope's active spaces when they are all of one model, else the default
    /// (no vectors yet, or spaces of several models).
    #[must_use]
    pub fn for_spaces(&self, spaces: &[Space]) -> Fusion {
        let mut models = spaces
            .iter()
            .filter(|s| s.status == SpaceStatus::Active)
            .map(|s| s.model.name());
        let first = models.next();
        if models.all(|m| Some(m) == first) {
            self.for_model(first)
        } else {
            self.for_model(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(score: f32) -> Candidate {
        Candidate {
            chunk_id: ChunkId::new(),
            score,
        }
    }

    fn ids(list: &[Candidate]) -> Vec<ChunkId> {
        list.iter().map(|c| c.chunk_id).collect()
    }

    #[test]
    fn equal_rrf_rewards_agreement_and_scales_to_one() {
        let a = c(0.9);
        let b = c(0.8);
        let d = c(0.7);
        let vector = [a, b, d];
        let keyword = [
            Candidate { score: 12.0, ..b },
            Candidate { score: 3.0, ..a },
        ];
        let fused = Fusion::default().fuse(&vector, &keyword);
        // a: 1/61 + 1/62; b: 1/62 + 1/61 — equal; d only in one list comes last.
        assert_eq!(fused.len(), 3);
        assert_eq!(fused[2].chunk_id, d.chunk_id);
        assert!((fused[0].score - fused[1].score).abs() < 1e-6);
        let first_in_both = Fusion::default().fuse(&[a], &[a]);
        assert!((first_in_both[0].score - 1.0).abs() < 1e-6);
        assert!(fused.iter().all(|f| f.score > 0.0 && f.score <= 1.0));
    }

    #[test]
    fn a_heavier_leg_wins_a_disagreement() {
        let a = c(0.9);
        let b = c(5.0);
        let vector = [a, Candidate { score: 0.1, ..b }];
        let keyword = [b, Candidate { score: 1.0, ..a }];
        for method in [FusionMethod::Rrf, FusionMethod::MinMax] {
            let keyword_first = Fusion::new(method, 2.0, 1.0, "f").expect("valid");
            assert_eq!(
                ids(&keyword_first.fuse(&vector, &keyword)),
                vec![b.chunk_id, a.chunk_id],
                "{method:?}"
            );
            let vector_first = Fusion::new(method, 1.0, 2.0, "f").expect("valid");
            assert_eq!(
                ids(&vector_first.fuse(&vector, &keyword)),
                vec![a.chunk_id, b.chunk_id],
                "{method:?}"
            );
        }
    }

    #[test]
    fn every_minmax_score_is_in_0_to_1_and_above_0() {
        let (a, b, d) = (c(0.9), c(0.5), c(0.1));
        let fused = Fusion::new(FusionMethod::MinMax, 1.5, 1.0, "f")
            .expect("valid")
            .fuse(
                &[a, b, d],
                &[Candidate { score: 7.0, ..a }, Candidate { score: 2.0, ..d }],
            );
        assert_eq!(fused[0].chunk_id, a.chunk_id);
        assert!((fused[0].score - 1.0).abs() < 1e-6, "first in both: 1.0");
        assert!(
            fused.iter().all(|f| f.score > 0.0 && f.score <= 1.0),
            "{fused:?}"
        );
    }

    #[test]
    fn a_zero_weight_leg_keeps_the_other_order() {
        let list = [c(0.9), c(0.5), c(0.1)];
        let other = [c(3.0), list[2], c(1.0)];
        for method in [FusionMethod::Rrf, FusionMethod::MinMax] {
            let fused = Fusion::new(method, 0.0, 1.0, "f")
                .expect("valid")
                .fuse(&list, &other);
            assert_eq!(ids(&fused), ids(&list), "{method:?}");
        }
    }

    #[test]
    fn weights_are_checked() {
        assert!(Fusion::new(FusionMethod::Rrf, 0.0, 0.0, "f").is_err());
        assert!(Fusion::new(FusionMethod::Rrf, -1.0, 1.0, "f").is_err());
        assert!(Fusion::new(FusionMethod::Rrf, f32::NAN, 1.0, "f").is_err());
        assert!(Fusion::new(FusionMethod::Rrf, 101.0, 1.0, "f").is_err());
        let per_model = FusionSettings::new(
            Fusion::default(),
            HashMap::from([(
                "m".to_owned(),
                Fusion::new(FusionMethod::MinMax, 3.0, 1.0, "f").expect("valid"),
            )]),
        );
        assert_eq!(per_model.for_model(Some("m")).method, FusionMethod::MinMax);
        assert_eq!(per_model.for_model(Some("other")), Fusion::default());
        assert_eq!(per_model.for_model(None), Fusion::default());
    }

    #[test]
    fn one_rule_picks_the_fusion_of_the_scopes_one_active_model() {
        let ngram = Fusion::new(FusionMethod::MinMax, 1.5, 1.0, "fusion").unwrap();
        let minilm = Fusion::new(FusionMethod::Rrf, 1.0, 2.0, "fusion").unwrap();
        let settings = FusionSettings::new(
            Fusion::default(),
            HashMap::from([("ngram".to_owned(), ngram), ("minilm".to_owned(), minilm)]),
        );
        let tenant = kernel::TenantId::new();
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let space = |model: &str, status| {
            Space::new(
                tenant,
                None,
                crate::model::EmbeddingModel::new(model, 8).unwrap(),
                status,
                now,
            )
        };
        assert_eq!(settings.for_spaces(&[]), Fusion::default());
        assert_eq!(
            settings.for_spaces(&[space("ngram", SpaceStatus::Active)]),
            ngram
        );
        // Two collections of one model: still its fusion; a building or retired space of
        // another model is not searched, so it does not count.
        assert_eq!(
            settings.for_spaces(&[
                space("minilm", SpaceStatus::Active),
                space("minilm", SpaceStatus::Active),
                space("ngram", SpaceStatus::Building),
                space("ngram", SpaceStatus::Retired),
            ]),
            minilm
        );
        // Two models searched: the default.
        assert_eq!(
            settings.for_spaces(&[
                space("minilm", SpaceStatus::Active),
                space("ngram", SpaceStatus::Active),
            ]),
            Fusion::default()
        );
        // A model without its own: the default.
        assert_eq!(
            settings.for_spaces(&[space("other", SpaceStatus::Active)]),
            Fusion::default()
        );
    }
}
