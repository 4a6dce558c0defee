//! The kernel command line (`/chosen/bootargs`): space-separated `key=value` words and flags.

/// A parsed command line; borrows the string.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a>(pub &'a str);

impl<'a> Cmdline<'a> {
    /// The value of the last `key=value` word for `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .split_ascii_whitespace()
            .rev()
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Is the bare word `flag` present?
    pub fn has(&self, flag: &str) -> bool {
        self.0.split_ascii_whitespace().any(|w| w == flag)
    }

    /// A numeric value; `Err` names the key and the bad value.
    pub fn number(&self, key: &str) -> Result<Option<u64>, CmdlineError<'a>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_number(v).map(Some).ok_or(CmdlineError {
                key: self.key_static(key),
                value: v,
            }),
        }
    }

    fn key_static(&self, key: &str) -> &'a str {
        self.0
            .split_ascii_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, _)| k)
            .find(|k| *k == key)
            .unwrap_or("?")
    }
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A `key=value` word whose value is not a number.
#[derive(Debug, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    /// The key.
    pub key: &'a str,
    /// The value as written.
    pub value: &'a str,
}

impl core::fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "command line: `{}={}` is not a number",
            self.key, self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_flags_numbers() {
        let c = Cmdline("semihosting loglevel=debug cpus=2 seconds=0x10 cpus=3 bad=x1");
        assert!(c.has("semihosting"));
        assert!(!c.has("loglevel"));
        assert_eq!(c.get("loglevel"), Some("debug"));
        assert_eq!(c.number("cpus"), Ok(Some(3)));
        assert_eq!(c.number("seconds"), Ok(Some(16)));
        assert_eq!(c.number("missing"), Ok(None));
        let e = c.number("bad").unwrap_err();
        assert_eq!(e.to_string(), "command line: `bad=x1` is not a number");
        assert_eq!(Cmdline("").get("x"), None);
    }
}
