//! What a bearer token an operator sets must be: the coordinator's admin
//! and node tokens, the miner's API token. Each guards money (the admin
//! routes release payouts, the node routes spend the pool wallet, the miner
//! API can point a rig at another pool), so each must be too long to guess:
//! the coordinator slows a guessing address, but a botnet has many, and the
//! miner's API does not count guesses at all. It travels in
//! `Authorization: Bearer`, so it is visible ASCII: a space, a control or a
//! non-ASCII character would be mangled or refused by some client.

/// The fewest characters a configured token may have: 16 random ones are
/// out of reach of guessing (`openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a token may not be used. Each reads as the end of a sentence that
/// starts with the option's name ("--admin-token is shorter than..."), and
/// none quotes the token: the message reaches logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenWeakness {
    #[error("begins or ends with a space or a line break (a secret file's trailing newline?)")]
    PaddedWithSpace,
    #[error("holds a space, a control or a non-ASCII character: use letters, digits and ASCII punctuation")]
    NotVisibleAscii,
    #[error(
        "is shorter than {MIN_TOKEN_CHARS} characters, which can be guessed: use a random one (openssl rand -hex 16)"
    )]
    TooShort,
}

/// Why `token` may not be used; `None` when it may.
pub fn token_weakness(token: &str) -> Option<TokenWeakness> {
    if token.trim() != token {
        Some(TokenWeakness::PaddedWithSpace)
    } else if token.chars().any(|c| !c.is_ascii_graphic()) {
        Some(TokenWeakness::NotVisibleAscii)
    } else if token.len() < MIN_TOKEN_CHARS {
        Some(TokenWeakness::TooShort)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_visible_ascii() {
        #[rustfmt::skip]
        let cases = [
            ("0123456789abcdef", true, "16 characters"),
            ("a-long-random-string", true, "the documented example"),
            ("!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true, "ASCII punctuation"),
            ("0123456789abcde", false, "15 characters"),
            ("", false, "empty"),
            ("t0ken", false, "short"),
            ("0123456789 abcdef", false, "a space"),
            ("0123456789abcdef\n", false, "a line break"),
            ("\r0123456789abcdef", false, "a carriage return"),
            ("0123456789abcdef\t", false, "a tab"),
            ("0123456789abcdéf", false, "non-ASCII"),
            ("\u{7f}0123456789abcdef", false, "DEL"),
        ];
        for (token, allowed, why) in cases {
            assert_eq!(token_weakness(token).is_none(), allowed, "{why}: {:?}", token_weakness(token));
        }
        let message = token_weakness("s3cret").unwrap().to_string();
        assert!(!message.contains("s3cret"), "{message}");
    }
}
