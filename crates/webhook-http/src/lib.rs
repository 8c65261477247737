//! [`HttpSender`]: the webhooks domain's [`Sender`] over reqwest, with the destination guard.
//!
//! The guard ([`allowed`]) refuses every address that is not a public unicast one: loopback,
//! private (RFC 1918), shared (100.64/10), link-local, unique-local, site-local, multicast,
//! broadcast, unspecified, reserved and documentation ranges, and IPv6 forms that embed such an
//! IPv4 address (mapped, NAT64, 6to4), unless the operator allows private destinations
//! (`webhooks.allow_private_destinations`, for tests and private deployments).
//!
//! It is applied twice: at registration ([`Sender::check`], on every address the host resolves
//! to), and at delivery on the very addresses the connection uses. reqwest resolves host names
//! through [`GuardedResolver`], which refuses the name when any address it resolves to is not
//! allowed, so a name that resolves to a public address when registered and to a private one
//! later (DNS rebinding) is refused when it matters; the connection goes to the addresses that
//! lookup returned and checked, never to a second lookup's. A literal IP address never reaches
//! a resolver, so it is checked before the request. No redirect is followed, no proxy is used,
//! and the response body is never read.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use webhooks::{Outgoing, Refused, Sender, Sent};

/// Whether `ip` is a public unicast address a webhook may be sent to.
#[must_use]
pub fn allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => allowed_v4(v4),
        IpAddr::V6(v6) => allowed_v6(v6),
    }
}

fn allowed_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240
        // Shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, documentation, benchmarking.
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 198 && (b == 18 || b == 19)))
}

fn allowed_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return allowed_v4(v4);
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return allowed_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return allowed_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // IPv4-compatible (deprecated) ::/96.
        || s[..6] == [0, 0, 0, 0, 0, 0]
        // Unique-local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // Documentation 2001:db8::/32, Teredo 2001::/32.
        || (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0)))
}

/// What the guard says about one resolved or literal address set.
fn judge(addrs: &[SocketAddr], allow_private: bool) -> Result<(), Refused> {
    if addrs.is_empty() {
        return Err(Refused("the host has no address".to_owned()));
    }
    if allow_private || addrs.iter().all(|a| allowed(a.ip())) {
        Ok(())
    } else {
        Err(Refused(
            "the host is, or resolves to, a private, loopback, link-local or otherwise \
             non-public address"
                .to_owned(),
        ))
    }
}

/// The error a refused name resolves to inside reqwest (found again in the error's sources).
#[derive(Debug)]
struct Blocked(Refused);

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Blocked {}

/// The resolver of the webhook client: the system's lookup, then the guard on every address.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            judge(&addrs, allow_private).map_err(Blocked)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// How the sender behaves.
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    /// The whole request's time, connection included.
    pub timeout: Duration,
    /// The connection's time.
    pub connect_timeout: Duration,
    /// Whether private, loopback and other non-public destinations are allowed (tests).
    pub allow_private: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            allow_private: false,
        }
    }
}

/// Posts deliveries over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    config: SenderConfig,
}

impl HttpSender {
    /// A sender with its own client (built once; connections are pooled).
    ///
    /// # Errors
    /// When the HTTP client cannot be built (its TLS setup).
    pub fn new(config: SenderConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent("Quire-Webhooks/1")
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private,
            }))
            .build()?;
        Ok(Self { client, config })
    }

    /// The URL, parsed, with a literal IP host already judged.
    fn parse(&self, url: &str) -> Result<(Url, Option<String>), Refused> {
        let url = Url::parse(url).map_err(|_| Refused("is not a valid URL".to_owned()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(Refused("must be an http(s) URL".to_owned()));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Refused("has no port".to_owned()))?;
        let name = match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                judge(
                    &[SocketAddr::new(ip.into(), port)],
                    self.config.allow_private,
                )?;
                None
            }
            Some(url::Host::Ipv6(ip)) => {
                judge(
                    &[SocketAddr::new(ip.into(), port)],
                    self.config.allow_private,
                )?;
                None
            }
            Some(url::Host::Domain(d)) => Some(d.to_owned()),
            None => return Err(Refused("has no host".to_owned())),
        };
        Ok((url, name))
    }
}

/// Whether `e` was caused by the guard refusing the name, and its reason.
fn blocked(e: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return Some(b.0.clone());
        }
        source = s.source();
    }
    None
}

#[async_trait]
impl Sender for HttpSender {
    async fn check(&self, url: &str) -> Result<(), Refused> {
        let (url, name) = self.parse(url)?;
        let Some(name) = name else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|_| Refused("the host does not resolve".to_owned()))?
            .collect();
        judge(&addrs, self.config.allow_private)
    }

    async fn send(&self, request: Outgoing) -> Sent {
        let (url, _) = match self.parse(&request.url) {
            Ok(parsed) => parsed,
            Err(refused) => return Sent::Refused(refused.0),
        };
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &request.id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", &request.signature)
            .body(request.body)
            .send()
            .await;
        match sent {
            // The body is never read: dropping the response closes it.
            Ok(response) => Sent::Status(response.status().as_u16()),
            Err(e) => {
                if let Some(refused) = blocked(&e) {
                    return Sent::Refused(refused.0);
                }
                tracing::debug!(error = ?e, "a webhook attempt failed");
                Sent::Failed(if e.is_timeout() {
                    format!("no answer within {} s", self.config.timeout.as_secs())
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "the request failed".to_owned()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn only_public_unicast_addresses_are_allowed() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!allowed(ip(refused)), "{refused} is refused");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(allowed(ip(public)), "{public} is allowed");
        }
    }

    /// The TLS provider reqwest needs when the build has TLS (see Cargo.toml).
    fn provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn sender(allow_private: bool) -> HttpSender {
        provider();
        HttpSender::new(SenderConfig {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            allow_private,
        })
        .expect("client")
    }

    fn outgoing(url: String) -> Outgoing {
        Outgoing {
            url,
            id: "msg_1".to_owned(),
            timestamp: 1,
            signature: "v1,x".to_owned(),
            body: "{}".to_owned(),
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_private_destinations_are_refused_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let guarded = sender(false);
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f.1:{port}/"),
        ] {
            assert!(
                guarded.check(&url).await.is_err(),
                "{url} refused at registration"
            );
            assert!(
                matches!(guarded.send(outgoing(url.clone())).await, Sent::Refused(_)),
                "{url} refused at delivery"
            );
        }
        // Nothing ever connected.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection reached the listener");
        assert!(guarded.check("http://no-such-host.invalid/").await.is_err());
        assert!(guarded.check("not a url").await.is_err());
    }

    #[tokio::test]
    async fn an_allowed_destination_gets_the_signed_post_and_only_the_status_is_kept() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 5\r\n\r\nhello")
                .await
                .expect("write");
            String::from_utf8_lossy(&got).to_lowercase()
        });
        let open = sender(true);
        assert!(
            open.check(&format!("http://localhost:{port}/"))
                .await
                .is_ok()
        );
        let sent = open
            .send(outgoing(format!("http://localhost:{port}/hook")))
            .await;
        assert_eq!(sent, Sent::Status(302), "a redirect is not followed");
        let request = server.await.expect("server");
        assert!(request.starts_with("post /hook http/1.1"));
        assert!(request.contains("webhook-id: msg_1"));
        assert!(request.contains("webhook-timestamp: 1"));
        assert!(request.contains("webhook-signature: v1,x"));
        assert!(request.contains("content-type: application/json"));
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _hold = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        provider();
        let open = HttpSender::new(SenderConfig {
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
            allow_private: true,
        })
        .expect("client");
        let sent = open
            .send(outgoing(format!("http://127.0.0.1:{port}/")))
            .await;
        assert!(
            matches!(sent, Sent::Failed(ref m) if m.starts_with("no answer")),
            "{sent:?}"
        );
    }
}
