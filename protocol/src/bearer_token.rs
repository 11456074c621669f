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

/// Why `token` may not be used, as the end of a sentence that starts with
/// the option's name ("--admin-token is shorter than..."); `None` when it
/// may. The token itself is never quoted: the message reaches logs.
pub fn token_weakness(token: &str) -> Option<String> {
    if token.trim() != token {
        return Some("begins or ends with a space or a line break (a secret file's trailing newline?)".into());
    }
    if token.chars().any(|c| !c.is_ascii_graphic()) {
        return Some(
            "holds a space, a control or a non-ASCII character: use letters, digits and ASCII punctuation".into(),
        );
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Some(format!(
            "is shorter than {MIN_TOKEN_CHARS} characters, which can be guessed: use a random one (openssl rand -hex 16)"
        ));
    }
    None
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
        let message = token_weakness("s3cret").unwrap();
        assert!(!message.contains("s3cret"), "{message}");
    }
}
