//! Webhook targets: which URLs an endpoint may have, and which addresses a delivery
//! may connect to (SSRF).
//!
//! Unless private targets are allowed, a delivery never connects to loopback,
//! private, link-local, CGNAT, multicast, unspecified, broadcast, reserved or
//! documentation addresses, the 6to4 relay anycast `192.88.99.0/24`, a cloud's
//! host-internal address (Azure's `168.63.129.16`), nor to IPv6 forms that embed one
//! of them or a tunnel's (IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
//! `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and the
//! local-use `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32`), and only to
//! ports 80, 443 and 1024–65535 ([`port_refusal`]). The check applies to the address
//! actually connected to, after name resolution; see `connectors::delivery::client`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why an address is not a target, e.g. `"a loopback address"`; `None` when it is a
/// public address.
pub fn address_refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "an unspecified address",
        (0, _, _) => "a 'this network' address (0.0.0.0/8)",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (192, 168, _) => "a private address",
        (100, 64..=127, _) => "a carrier-grade NAT address (100.64.0.0/10)",
        (169, 254, _) => "a link-local address",
        (192, 0, 0) => "an IETF protocol address (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a 6to4 relay anycast address (192.88.99.0/24)",
        (168, 63, 129) if ip.octets()[3] == 16 => {
            "a cloud host-internal address (168.63.129.16, Azure's wireserver)"
        }
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        (224..=239, _, _) => "a multicast address",
        _ if ip.is_broadcast() => "the broadcast address",
        (240..=255, _, _) => "a reserved address (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if let Some(v4) = ip.to_ipv4() {
        let mapped = seg[5] == 0xffff;
        return match v4_refusal(v4) {
            Some(_) if mapped => Some("an IPv4-mapped form of a non-public IPv4 address"),
            Some(_) => Some("an IPv4-compatible form of a non-public IPv4 address"),
            // ::a.b.c.d with a public a.b.c.d: deprecated, never a real target.
            None if !mapped => Some("an IPv4-compatible address (deprecated)"),
            None => None,
        };
    }
    // ::ffff:0:a.b.c.d (IPv4-translated, SIIT): a translator's form, never a target.
    if seg[..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        return Some("an IPv4-translated address (::ffff:0:0/96)");
    }
    if seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2] == 0x0001 {
        return Some("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    if seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return v4_refusal(v4).map(|_| "a NAT64 form of a non-public IPv4 address");
    }
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        );
        return v4_refusal(v4).map(|_| "a 6to4 form of a non-public IPv4 address");
    }
    Some(match seg[0] {
        0xfc00..=0xfdff => "a private (unique local) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if seg[1] == 0x0db8 => "a documentation address",
        0x2001 if seg[1] == 0 => "a Teredo tunnel address (2001::/32)",
        0x0100 if seg[1..4] == [0, 0, 0] => "a discard-only address (100::/64)",
        _ => return None,
    })
}

/// Why the port of URL `text` is not a target, e.g. `"port 25 is not 80, 443 or 1024–65535"`;
/// `None` for those ports (and a URL without one: its scheme's 80 or 443). Below 1024
/// live the well-known services of a host (SSH, SMTP, its own admin ports) a webhook
/// has no business reaching.
pub fn port_refusal(text: &str) -> Option<String> {
    let port = url::Url::parse(text).ok()?.port()?;
    (port != 80 && port != 443 && port < 1024)
        .then(|| format!("port {port} is not 80, 443 or 1024–65535"))
}

/// Why `text` is not an endpoint URL, as a sentence for the client; `None` when it is
/// an absolute `http://` or `https://` URL with a host.
pub fn url_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some(
            "webhook is empty: give the full http:// or https:// URL of your endpoint".into(),
        );
    }
    let chars = text.chars().count();
    if chars > MAX_URL_LEN {
        return Some(format!("webhook is {chars} chars, at most {MAX_URL_LEN}"));
    }
    if text.trim() != text {
        return Some("webhook has leading or trailing whitespace: send the URL alone".into());
    }
    // The URL standard drops tabs, newlines and leading control characters and
    // encodes spaces, so such text would be stored as one URL and mean another.
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "webhook {text:?} contains {c:?}: percent-encode spaces and control characters"
        ));
    }
    // `https:/host` and `https:host` parse as `https://host/`: say so rather than store
    // one URL and mean another.
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Some(format!(
            "webhook {text:?} must begin with http:// or https:// (two slashes), e.g. https://api.example.com/events"
        ));
    }
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return Some(format!("webhook {text:?} is not a valid URL ({e}): give the full URL, e.g. https://api.example.com/events")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "webhook {text:?} has scheme {:?}: it must begin with http:// or https://",
            url.scheme()
        ));
    }
    // The URL standard reads `http:///x` as `http://x/`; a client that wrote that did
    // not mean host `x`, so the authority must be written out.
    let authority = text.split_once("://").map(|(_, rest)| rest);
    if url.host_str().is_none_or(str::is_empty)
        || authority.is_none_or(|a| a.starts_with(['/', '\\']) || a.is_empty())
    {
        return Some(format!("webhook {text:?} has no host"));
    }
    // The URL standard lets through host names no resolver has (`a*`, `a..b`). A DNS
    // name is dot-separated labels of letters, digits, hyphens (and underscores, which
    // some internal names use); an IDN arrives here as punycode.
    if let Some(url::Host::Domain(host)) = url.host() {
        let labels = host.strip_suffix('.').unwrap_or(host);
        let dns = labels.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !dns {
            return Some(format!(
                "webhook {text:?} has host {host:?}, which is not a DNS name (letters, digits and hyphens, between dots)"
            ));
        }
    }
    None
}

/// The address a URL's host is written as, when it is a literal IP.
pub fn literal_ip(text: &str) -> Option<IpAddr> {
    match url::Url::parse(text).ok()?.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        address_refusal(s.parse().unwrap()).is_some()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.255",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "192.88.99.1",
            "168.63.129.16",
        ] {
            assert!(refused(a), "{a} must be refused");
        }
        // Their neighbours stay public.
        for a in [
            "168.63.129.17",
            "192.88.100.1",
            "2001:4860::8888",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(a), "{a} is public");
        }
    }

    #[test]
    fn only_ports_80_443_and_1024_up_are_targets() {
        for ok in [
            "https://a.example/x",
            "http://a.example:80/",
            "https://a.example:443/",
            "https://a.example:1024/",
            "http://a.example:8080/",
            "https://a.example:65535/",
        ] {
            assert_eq!(port_refusal(ok), None, "{ok}");
        }
        for bad in [
            "http://a.example:22/",
            "https://a.example:25/",
            "http://a.example:1023/",
            "http://a.example:0/",
        ] {
            assert!(
                port_refusal(bad).unwrap().contains("80, 443 or 1024"),
                "{bad}"
            );
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!refused(a), "{a} is public");
        }
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        for ok in [
            "https://api.example.com/events",
            "http://127.0.0.1:8080/hook?x=1",
            "http://[::1]:9/",
            "https://Bücher.example/x",
            "https://my_service.internal./hook#frag",
        ] {
            assert_eq!(url_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "   ",
            "api.example.com/events",
            "ftp://example.com/",
            "javascript:alert(1)",
            "https://",
            "http:///path",
            " https://example.com",
            "mailto:a@example.com",
            "HTTP://A*",
            "https://a..b/",
            "https://a b/",
            "https://example.com/a b",
            "\u{1}https://example.com/",
            "https://example.com/\tx",
        ] {
            assert!(url_problem(bad).is_some(), "{bad:?} must be refused");
        }
        assert!(url_problem(&format!("https://e.com/{}", "a".repeat(3000))).is_some());
    }

    #[test]
    fn literal_hosts_are_found() {
        assert_eq!(
            literal_ip("http://127.0.0.1:1/x"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(literal_ip("http://[::1]/"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("http://localhost/"), None);
        // The URL parser reads the shorthand forms an attacker might try.
        assert_eq!(
            literal_ip("http://2130706433/"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            literal_ip("http://0x7f.1/"),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
