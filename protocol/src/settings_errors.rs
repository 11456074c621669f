//! What an error about a settings file may say. Both binaries read TOML
//! settings that can hold secrets (the admin token, a database password,
//! the miner's API token), and serde's messages quote the value they could
//! not take: the message reaches the log, so the value is left out.

/// `message` without the value serde quotes in it (`invalid type: string
/// "…", expected u32`, ``unknown variant `…`, expected …``): what was found
/// and what was expected, not the value itself.
pub fn without_value(message: &str) -> String {
    let message = message.trim();
    let quotes_value = ["invalid type", "invalid value", "unknown variant"];
    if !quotes_value.iter().any(|kind| message.starts_with(kind)) {
        return message.to_string();
    }
    let kind = message.split([':', '`', '"']).next().unwrap_or_default().trim();
    // The expectation is serde's own words, after the value.
    let expected = message.rfind(", expected ").map_or("", |at| &message[at..]);
    format!("{kind}{expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_s_quoted_values_are_left_out() {
        let cases = [
            ("invalid type: string \"s3cret\", expected u32", "invalid type, expected u32"),
            ("invalid type: string \"a\\\"s3cret, expected b\", expected u32", "invalid type, expected u32"),
            (
                "unknown variant `s3cret`, expected one of `pplns`, `prop`",
                "unknown variant, expected one of `pplns`, `prop`",
            ),
            ("invalid value: integer `-1`, expected u64", "invalid value, expected u64"),
            ("missing field `wallet`", "missing field `wallet`"),
        ];
        for (message, shown) in cases {
            assert_eq!(without_value(message), shown, "{message}");
        }
    }
}
