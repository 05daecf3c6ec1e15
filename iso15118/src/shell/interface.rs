//! Network interfaces by name: the index IPv6 link-local addresses and
//! multicast need as scope, and the interface's link-local address the SDP
//! server announces. Read from `/sys/class/net` and `/proc/net/if_inet6`
//! (Linux); other systems get [`Error::Interface`].

use std::net::Ipv6Addr;

use super::Error;

/// A network interface: its name and index (the scope id of its link-local
/// addresses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interface {
    name: String,
    index: u32,
}

fn err(name: &str, reason: impl Into<String>) -> Error {
    Error::Interface {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Linux interface names: 1 to 15 bytes, no `/`, no whitespace, not `.`/`..`.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(err(name, "not a valid interface name"))
    }
}

impl Interface {
    /// Looks an interface up by name (`eth0`, `veth-ev`).
    ///
    /// # Errors
    ///
    /// [`Error::Interface`] if the name is not valid, no such interface
    /// exists, or the OS is not Linux.
    pub fn by_name(name: &str) -> Result<Self, Error> {
        check_name(name)?;
        let index = read_index(name)?;
        Ok(Self {
            name: name.to_string(),
            index,
        })
    }

    /// An interface known by its index (no look-up).
    pub fn from_index(name: impl Into<String>, index: u32) -> Self {
        Self {
            name: name.into(),
            index,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its index: the scope id of link-local addresses on it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Its IPv6 link-local address (`fe80::/10`), the address the SDP
    /// server announces and a TCP server on the interface listens on.
    ///
    /// # Errors
    ///
    /// [`Error::Interface`] if it has none, or the OS is not Linux.
    pub fn link_local_address(&self) -> Result<Ipv6Addr, Error> {
        read_link_local(&self.name)
    }
}

/// Whether an address is IPv6 unicast link-local (`fe80::/10`), the
/// addresses that need a scope id.
pub(crate) fn is_unicast_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(target_os = "linux")]
fn read_index(name: &str) -> Result<u32, Error> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| err(name, format!("{path}: {e}")))?;
    text.trim()
        .parse()
        .map_err(|_| err(name, format!("{path}: not an index: {text:?}")))
}

#[cfg(not(target_os = "linux"))]
fn read_index(name: &str) -> Result<u32, Error> {
    Err(err(name, "interface look-up is only implemented on Linux"))
}

#[cfg(target_os = "linux")]
fn read_link_local(name: &str) -> Result<Ipv6Addr, Error> {
    let text = std::fs::read_to_string("/proc/net/if_inet6")
        .map_err(|e| err(name, format!("/proc/net/if_inet6: {e}")))?;
    parse_if_inet6(&text, name).ok_or_else(|| err(name, "no IPv6 link-local address"))
}

#[cfg(not(target_os = "linux"))]
fn read_link_local(name: &str) -> Result<Ipv6Addr, Error> {
    Err(err(name, "interface look-up is only implemented on Linux"))
}

/// The first link-local address of `name` in `/proc/net/if_inet6` lines
/// (`fe8000000000000000fc00fffe000001 04 40 20 80     eth0`: address,
/// index, prefix length, scope, flags, name).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_if_inet6(text: &str, name: &str) -> Option<Ipv6Addr> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 6 || fields[5] != name || fields[0].len() != 32 {
            return None;
        }
        let bits = u128::from_str_radix(fields[0], 16).ok()?;
        let addr = Ipv6Addr::from(bits);
        is_unicast_link_local(&addr).then_some(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_sysfs_are_refused() {
        for bad in ["", ".", "..", "../lo", "a/b", "sixteen-chars-xx", "e th0"] {
            assert!(
                matches!(check_name(bad), Err(Error::Interface { .. })),
                "{bad:?}"
            );
        }
        assert!(check_name("eth0").is_ok());
        assert!(check_name("veth-ev.1").is_ok());
    }

    #[test]
    fn if_inet6_lines() {
        let text = "fd000000000000000000000000000002 04 40 00 82     eth0\n\
                    fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                    00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            parse_if_inet6(text, "eth0"),
            Some("fe80::fc:ff:fe00:1".parse().unwrap())
        );
        assert_eq!(parse_if_inet6(text, "lo"), None);
        assert_eq!(parse_if_inet6("garbage\n", "eth0"), None);
    }
}
