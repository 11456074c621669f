//! What a worker's display name (and its miner's version text) may hold:
//! text that shows as itself on the public dashboard. Characters that
//! reorder or hide the text around them would let a name pass for
//! another's (`rig` and `r\u{200B}ig` look alike; a bidi override turns
//! `7gir` into `rig7`). Confusable letters (Cyrillic `а` for Latin `a`) are
//! still possible: the dashboard shows the wallet beside every name.

use unicode_properties::{GeneralCategory as Category, UnicodeEmoji, UnicodeGeneralCategory};

/// Emoji variation selectors: text or emoji presentation of the character
/// before them.
const EMOJI_SELECTORS: [char; 2] = ['\u{FE0E}', '\u{FE0F}'];
const ZERO_WIDTH_JOINER: char = '\u{200D}';
const KEYCAP: char = '\u{20E3}';

/// Whether every character of `name` shows as itself. Refused: control and
/// format characters (bidi overrides and isolates, zero-width spaces and
/// joiners, tags), line and paragraph separators, private-use and
/// unassigned characters, and those that draw nothing (variation selectors,
/// the combining grapheme joiner, Hangul and Khmer fillers, Mongolian
/// selectors). Except, as emoji are typed: a presentation selector after
/// an emoji (or in a keycap, `1️⃣`), and a joiner between two emoji (`👨‍💻`).
pub(crate) fn shows_as_itself(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        let before = i.checked_sub(1).map(|i| chars[i]);
        let after = chars.get(i + 1).copied();
        let emoji = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && c.is_emoji_char());
        if EMOJI_SELECTORS.contains(&c) {
            let keycap = before.is_some_and(|b| b.is_ascii_digit() || b == '#' || b == '*') && after == Some(KEYCAP);
            emoji(before) || keycap
        } else if c == ZERO_WIDTH_JOINER {
            let ends_emoji = emoji(before) || (before.is_some_and(|b| EMOJI_SELECTORS.contains(&b)) && i >= 2);
            ends_emoji && emoji(after)
        } else {
            is_shown_as_is(c)
        }
    })
}

/// Whether `c`, out of context, shows as itself.
fn is_shown_as_is(c: char) -> bool {
    let hidden_category = matches!(
        c.general_category(),
        Category::Control
            | Category::Format
            | Category::LineSeparator
            | Category::ParagraphSeparator
            | Category::Surrogate
            | Category::PrivateUse
            | Category::Unassigned
    );
    let draws_nothing = matches!(
        c,
        '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    );
    !hidden_category && !draws_nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_show_as_themselves() {
        let shown = [
            "rig-7",
            "Ферма 2",
            "矿机",
            "café rig",
            "e\u{0301}",
            "rig #3 (spare)",
            "नोड",
            "ฟาร์ม",
            "مزرعة",
            "חווה",
            "🚀 rig",
            "❤\u{FE0F} rig",
            "⛏\u{FE0F}",
            "1\u{FE0F}\u{20E3}",
            "👨\u{200D}💻",
            "❤\u{FE0F}\u{200D}🔥",
            "👍🏽",
            "🇫🇷",
        ];
        for name in shown {
            assert!(shows_as_itself(name), "{name:?}");
        }
        let hidden = [
            "rig\u{202E}7gir",
            "land1\u{200B}victim",
            "a\u{2066}b",
            "x\u{FEFF}",
            "tab\there",
            "a\u{2028}b",
            "tag\u{E0041}",
            "rig\u{FE0F}",
            "rig1\u{FE0F}",
            "\u{FE0F}",
            "a\u{200D}b",
            "🚀\u{200D}",
            "\u{200D}🚀",
            "a\u{200C}b",
            "cgj\u{034F}",
            "fill\u{3164}er",
            "arabic\u{0600}",
            "music\u{1D173}",
            "private\u{E000}",
            "vs\u{E0100}",
        ];
        for name in hidden {
            assert!(!shows_as_itself(name), "{name:?}");
        }
    }
}
