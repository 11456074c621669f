//! What a worker's display name (and its miner's version text) may hold:
//! text that shows as itself on the public dashboard. Characters that
//! reorder or hide the text around them would let a name pass for
//! another's (`rig` and `r\u{200B}ig` look alike; a bidi override turns
//! `7gir` into `rig7`). Confusable letters (Cyrillic `а` for Latin `a`) are
//! still possible: the dashboard shows the wallet beside every name.

use unicode_normalization::char::canonical_combining_class;
use unicode_properties::{GeneralCategory as Category, UnicodeEmoji, UnicodeGeneralCategory};

/// Emoji variation selectors: text or emoji presentation of the character
/// before them.
const EMOJI_SELECTORS: [char; 2] = ['\u{FE0E}', '\u{FE0F}'];
const ZERO_WIDTH_NON_JOINER: char = '\u{200C}';
const ZERO_WIDTH_JOINER: char = '\u{200D}';
const KEYCAP: char = '\u{20E3}';
const BLACK_FLAG: char = '\u{1F3F4}';
const CANCEL_TAG: char = '\u{E007F}';
/// The canonical combining class of a virama (a vowel killer), after which
/// the joiners choose a conjunct's form (RFC 5892, A.1 and A.2).
const VIRAMA: u8 = 9;
/// Nonspacing marks on one character: more draw over the rows around it.
const MAX_MARKS_IN_A_ROW: usize = 4;

/// Whether every character of `name` shows as itself, and it shows at all.
///
/// Refused: a name of nothing but spaces; control and format characters
/// (bidi overrides and isolates, zero-width spaces and joiners, tags), line
/// and paragraph separators, private-use and unassigned characters; those
/// that draw nothing (variation selectors, the combining grapheme joiner,
/// fillers); more than [`MAX_MARKS_IN_A_ROW`] nonspacing marks on one
/// character. Allowed where they change what is drawn: a presentation
/// selector after an emoji (or in a keycap, `1️⃣`); a joiner between two
/// emoji (`👨‍💻`), after a virama (`ශ්‍රී`), or a non-joiner between Arabic
/// letters (`خانه‌ها`); a Mongolian selector after a Mongolian letter;
/// the tags of a subdivision flag (`🏴󠁧󠁢󠁳󠁣󠁴󠁿`).
pub(crate) fn shows_as_itself(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    if chars.iter().all(|c| c.is_whitespace()) {
        return false;
    }
    let mut marks_in_a_row = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let before = i.checked_sub(1).map(|i| chars[i]);
        let after = chars.get(i + 1).copied();
        if c == BLACK_FLAG && after.is_some_and(is_tag) {
            // A subdivision flag: tag letters, ended by the cancel tag.
            let tags = chars[i + 1..].iter().take_while(|&&t| is_tag(t) && t != CANCEL_TAG).count();
            if chars.get(i + 1 + tags) != Some(&CANCEL_TAG) {
                return false;
            }
            i += tags + 2;
            marks_in_a_row = 0;
            continue;
        }
        let shown = if EMOJI_SELECTORS.contains(&c) {
            let keycap = before.is_some_and(|b| b.is_ascii_digit() || b == '#' || b == '*') && after == Some(KEYCAP);
            is_emoji(before) || keycap
        } else if c == ZERO_WIDTH_JOINER {
            let after_emoji = is_emoji(before) || (before.is_some_and(|b| EMOJI_SELECTORS.contains(&b)) && i >= 2);
            (after_emoji && is_emoji(after)) || after_virama(before)
        } else if c == ZERO_WIDTH_NON_JOINER {
            after_virama(before) || (before.is_some_and(is_arabic_letter) && after.is_some_and(is_arabic_letter))
        } else if ('\u{180B}'..='\u{180D}').contains(&c) {
            before.is_some_and(|b| ('\u{1820}'..='\u{1878}').contains(&b))
        } else {
            is_shown_as_is(c)
        };
        if !shown {
            return false;
        }
        marks_in_a_row = if c.general_category() == Category::NonspacingMark { marks_in_a_row + 1 } else { 0 };
        if marks_in_a_row > MAX_MARKS_IN_A_ROW {
            return false;
        }
        i += 1;
    }
    true
}

fn is_emoji(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_ascii() && c.is_emoji_char())
}

fn after_virama(before: Option<char>) -> bool {
    before.is_some_and(|b| canonical_combining_class(b) == VIRAMA)
}

fn is_tag(c: char) -> bool {
    ('\u{E0020}'..=CANCEL_TAG).contains(&c)
}

/// A letter of the Arabic script (which the non-joiner keeps from joining).
fn is_arabic_letter(c: char) -> bool {
    let arabic = matches!(c, '\u{0620}'..='\u{064A}' | '\u{066E}'..='\u{06D5}' | '\u{06EE}'..='\u{06FF}'
        | '\u{0750}'..='\u{077F}' | '\u{08A0}'..='\u{08C9}');
    arabic && c.general_category() == Category::OtherLetter
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
            // Persian: a non-joiner between Arabic letters.
            "خانه\u{200C}ها",
            // Sinhala: a joiner after a virama.
            "ශ\u{0DCA}\u{200D}රී",
            // Devanagari: a non-joiner after a virama.
            "क\u{094D}\u{200C}ष",
            // Mongolian: a free variation selector after a letter.
            "\u{1820}\u{180B}",
            // Scotland's flag: tags ended by the cancel tag.
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} rig",
            " rig ",
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
            "🏴\u{E0067}\u{E0062}",
            "rig\u{FE0F}",
            "rig1\u{FE0F}",
            "\u{FE0F}",
            "a\u{200D}b",
            "🚀\u{200D}",
            "\u{200D}🚀",
            "a\u{200C}b",
            "خانه\u{200C}b",
            "a\u{180B}",
            "cgj\u{034F}",
            "fill\u{3164}er",
            "arabic\u{0600}",
            "music\u{1D173}",
            "private\u{E000}",
            "vs\u{E0100}",
            "khitan\u{16FE4}",
            "",
            "   ",
            "\u{3000}\u{2003}",
            "e\u{0301}\u{0302}\u{0303}\u{0304}\u{0305}",
        ];
        for name in hidden {
            assert!(!shows_as_itself(name), "{name:?}");
        }
    }
}
