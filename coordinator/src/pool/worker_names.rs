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
/// Combining marks on one character: more draw over the rows around it.
const MAX_MARKS_IN_A_ROW: usize = 4;

/// `text` as a name is kept: trimmed, each run of spaces one space (HTML
/// shows `rig`, `rig ` and `r  ig` alike), `None` when it is blank. (Only
/// spaces are folded: a tab or a line separator stays, for
/// [`shows_as_itself`] to refuse.)
pub(crate) fn normalized(text: &str) -> Option<String> {
    if text.chars().all(char::is_whitespace) {
        return None;
    }
    let words: Vec<&str> =
        text.split(|c: char| c.general_category() == Category::SpaceSeparator).filter(|w| !w.is_empty()).collect();
    Some(words.join(" "))
}

/// Whether every character of `name` shows as itself.
///
/// Refused: control and format characters (bidi overrides and isolates,
/// zero-width spaces and joiners, tags), line and paragraph separators,
/// private-use and unassigned characters; those that draw nothing
/// (variation selectors, the combining grapheme joiner, fillers); more than
/// [`MAX_MARKS_IN_A_ROW`] combining marks on one character. Allowed, as
/// emoji are typed: a presentation selector after an emoji (or in a
/// keycap, `1️⃣`), and a joiner between two emoji (`👨‍💻`). (Scripts that
/// use joiners inside words, as Persian and Sinhala do, are refused them:
/// told apart from a hidden one they are not, here.)
pub(crate) fn shows_as_itself(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    let mut marks_in_a_row = 0;
    chars.iter().enumerate().all(|(i, &c)| {
        let before = i.checked_sub(1).map(|i| chars[i]);
        let after = chars.get(i + 1).copied();
        let shown = if EMOJI_SELECTORS.contains(&c) {
            let keycap = before.is_some_and(|b| b.is_ascii_digit() || b == '#' || b == '*') && after == Some(KEYCAP);
            is_emoji(before) || keycap
        } else if c == ZERO_WIDTH_JOINER {
            let after_emoji = is_emoji(before) || (before.is_some_and(|b| EMOJI_SELECTORS.contains(&b)) && i >= 2);
            after_emoji && is_emoji(after)
        } else {
            is_shown_as_is(c)
        };
        let mark = matches!(c.general_category(), Category::NonspacingMark | Category::EnclosingMark);
        marks_in_a_row = if mark { marks_in_a_row + 1 } else { 0 };
        shown && marks_in_a_row <= MAX_MARKS_IN_A_ROW
    })
}

fn is_emoji(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_ascii() && c.is_emoji_char())
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
            | '\u{16FE4}'
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
            "e\u{0301}\u{0302}\u{0303}\u{0304}",
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
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "rig\u{FE0F}",
            "rig1\u{FE0F}",
            "\u{FE0F}",
            "a\u{200D}b",
            "🚀\u{200D}",
            "\u{200D}🚀",
            "a\u{200C}b",
            "خانه\u{200C}ها",
            "ශ\u{0DCA}\u{200D}රී",
            "cgj\u{034F}",
            "fill\u{3164}er",
            "arabic\u{0600}",
            "music\u{1D173}",
            "private\u{E000}",
            "vs\u{E0100}",
            "khitan\u{16FE4}",
            "e\u{0301}\u{0302}\u{0303}\u{0304}\u{0305}",
            "e\u{0301}\u{0302}\u{0303}\u{0304}\u{0489}",
        ];
        for name in hidden {
            assert!(!shows_as_itself(name), "{name:?}");
        }
    }

    #[test]
    fn names_are_kept_trimmed_with_single_spaces() {
        let cases = [
            ("rig", Some("rig")),
            ("  rig  7 ", Some("rig 7")),
            ("r\u{3000}\u{2009}ig", Some("r ig")),
            ("", None),
            (" \u{3000}\t ", None),
            ("tab\there", Some("tab\there")),
            ("a\u{2028}b", Some("a\u{2028}b")),
        ];
        for (given, kept) in cases {
            assert_eq!(normalized(given).as_deref(), kept, "{given:?}");
        }
    }
}
