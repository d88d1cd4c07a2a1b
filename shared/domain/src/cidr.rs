//! VPC address space: every environment owns one /16 inside 10.0.0.0/8.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A VPC CIDR block `10.N.0.0/16`. Two of them overlap exactly when they are equal,
/// which lets stores enforce non-overlap with one reservation per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VpcCidr(u8);

impl VpcCidr {
    /// The block `10.{second_octet}.0.0/16`.
    pub const fn from_second_octet(second_octet: u8) -> Self {
        Self(second_octet)
    }

    /// The second octet that identifies the block.
    pub const fn second_octet(self) -> u8 {
        self.0
    }

    /// Parses `10.N.0.0/16`, saying what is wrong otherwise.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (addr, prefix) = raw
            .split_once('/')
            .ok_or("must be in CIDR notation, e.g. 10.4.0.0/16")?;
        let octets: Vec<u8> = addr
            .split('.')
            .map(|p| {
                p.parse::<u8>()
                    .map_err(|_| format!("{addr:?} is not an IPv4 address"))
            })
            .collect::<Result<_, _>>()?;
        let [a, b, c, d] = octets[..] else {
            return Err(format!("{addr:?} is not an IPv4 address"));
        };
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("prefix length {prefix:?} is not a number"))?;
        if prefix != 16 {
            return Err(format!("must be a /16 block, got /{prefix}"));
        }
        if a != 10 {
            return Err("must lie inside 10.0.0.0/8".into());
        }
        if c != 0 || d != 0 {
            return Err(format!("host bits are set: did you mean 10.{b}.0.0/16?"));
        }
        Ok(Self(b))
    }

    /// The /24 of the `index`-th subnet (1-based) inside this block.
    pub fn subnet(self, index: u8) -> String {
        format!("10.{}.{index}.0/24", self.0)
    }

    /// Picks a free block: `preferred` when free, else the lowest free block from 10.16.0.0/16
    /// upwards (10.0–10.15 are kept for the tiers' seed defaults), else any free block.
    pub fn allocate(preferred: Option<VpcCidr>, in_use: &BTreeSet<VpcCidr>) -> Option<VpcCidr> {
        if let Some(p) = preferred.filter(|p| !in_use.contains(p)) {
            return Some(p);
        }
        (16..=255u8)
            .chain(0..16)
            .map(VpcCidr)
            .find(|c| !in_use.contains(c))
    }
}

impl VpcCidr {
    /// The `pick`th free block (modulo how many are free), for a request that lost a block to
    /// a concurrent one: spreading the retries over the pool keeps a burst of creates from
    /// colliding on the same block round after round.
    pub fn allocate_spread(in_use: &BTreeSet<VpcCidr>, pick: u64) -> Option<VpcCidr> {
        let free: Vec<VpcCidr> = (16..=255u8)
            .chain(0..16)
            .map(VpcCidr)
            .filter(|c| !in_use.contains(c))
            .collect();
        let count = u64::try_from(free.len()).ok().filter(|n| *n > 0)?;
        free.get(usize::try_from(pick % count).ok()?).copied()
    }
}

impl TryFrom<String> for VpcCidr {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<VpcCidr> for String {
    fn from(value: VpcCidr) -> Self {
        value.to_string()
    }
}

impl fmt::Display for VpcCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "10.{}.0.0/16", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_inside_ten_slash_eight() {
        assert_eq!(VpcCidr::parse("10.2.0.0/16"), Ok(VpcCidr(2)));
        assert_eq!(
            VpcCidr::parse("10.255.0.0/16")
                .map(|c| c.to_string())
                .as_deref(),
            Ok("10.255.0.0/16")
        );
    }

    #[test]
    fn rejects_other_blocks() {
        for bad in [
            "10.0.0.0/24",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "10.0.1.0/16",
            "10.0.0.0",
            "10.300.0.0/16",
            "x/16",
            "10.0.0/16",
        ] {
            assert!(VpcCidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_prefers_the_default_then_the_pool() {
        let mut used = BTreeSet::new();
        assert_eq!(VpcCidr::allocate(Some(VpcCidr(0)), &used), Some(VpcCidr(0)));
        used.insert(VpcCidr(0));
        assert_eq!(
            VpcCidr::allocate(Some(VpcCidr(0)), &used),
            Some(VpcCidr(16))
        );
        used.extend((0..=255).map(VpcCidr));
        assert_eq!(VpcCidr::allocate(None, &used), None);
    }

    #[test]
    fn subnets_are_slash_24s() {
        assert_eq!(VpcCidr(2).subnet(4), "10.2.4.0/24");
    }
}
