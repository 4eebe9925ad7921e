//! `Lang`: a language by ISO 639-1 code, with its FLORES-200 code and English name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// (ISO 639-1, FLORES-200 code, English name), sorted by code.
const LANGS: &[(&str, &str, &str)] = &[
    ("am", "amh_Ethi", "Amharic"),
    ("ar", "arb_Arab", "Arabic"),
    ("bg", "bul_Cyrl", "Bulgarian"),
    ("bn", "ben_Beng", "Bengali"),
    ("cs", "ces_Latn", "Czech"),
    ("da", "dan_Latn", "Danish"),
    ("de", "deu_Latn", "German"),
    ("el", "ell_Grek", "Greek"),
    ("en", "eng_Latn", "English"),
    ("es", "spa_Latn", "Spanish"),
    ("fa", "pes_Arab", "Persian"),
    ("fi", "fin_Latn", "Finnish"),
    ("fr", "fra_Latn", "French"),
    ("gu", "guj_Gujr", "Gujarati"),
    ("ha", "hau_Latn", "Hausa"),
    ("he", "heb_Hebr", "Hebrew"),
    ("hi", "hin_Deva", "Hindi"),
    ("hu", "hun_Latn", "Hungarian"),
    ("id", "ind_Latn", "Indonesian"),
    ("ig", "ibo_Latn", "Igbo"),
    ("it", "ita_Latn", "Italian"),
    ("ja", "jpn_Jpan", "Japanese"),
    ("km", "khm_Khmr", "Khmer"),
    ("kn", "kan_Knda", "Kannada"),
    ("ko", "kor_Hang", "Korean"),
    ("lo", "lao_Laoo", "Lao"),
    ("ml", "mal_Mlym", "Malayalam"),
    ("mr", "mar_Deva", "Marathi"),
    ("ms", "zsm_Latn", "Malay"),
    ("my", "mya_Mymr", "Burmese"),
    ("ne", "npi_Deva", "Nepali"),
    ("nl", "nld_Latn", "Dutch"),
    ("pa", "pan_Guru", "Punjabi"),
    ("pl", "pol_Latn", "Polish"),
    ("pt", "por_Latn", "Portuguese"),
    ("ro", "ron_Latn", "Romanian"),
    ("ru", "rus_Cyrl", "Russian"),
    ("si", "sin_Sinh", "Sinhala"),
    ("so", "som_Latn", "Somali"),
    ("sv", "swe_Latn", "Swedish"),
    ("sw", "swh_Latn", "Swahili"),
    ("ta", "tam_Taml", "Tamil"),
    ("te", "tel_Telu", "Telugu"),
    ("th", "tha_Thai", "Thai"),
    ("tl", "tgl_Latn", "Tagalog"),
    ("tr", "tur_Latn", "Turkish"),
    ("uk", "ukr_Cyrl", "Ukrainian"),
    ("ur", "urd_Arab", "Urdu"),
    ("vi", "vie_Latn", "Vietnamese"),
    ("yo", "yor_Latn", "Yoruba"),
    ("zh", "zho_Hans", "Chinese (Simplified)"),
    ("zu", "zul_Latn", "Zulu"),
];

/// A language lsn knows, by ISO 639-1 code. Serializes as the code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lang(u16);

impl Lang {
    /// Parses an ISO 639-1 code (`"en"`) or a FLORES-200 code (`"eng_Latn"`).
    pub fn parse(code: &str) -> Result<Self> {
        let code = code.trim();
        LANGS
            .iter()
            .position(|(iso, flores, _)| iso.eq_ignore_ascii_case(code) || *flores == code)
            .map(|i| Lang(i as u16))
            .ok_or_else(|| Error::UnknownLanguage {
                code: code.to_owned(),
                known: LANGS.iter().map(|l| l.0).collect::<Vec<_>>().join(" "),
            })
    }

    /// Parses a comma-separated list such as `en,hi,zh`.
    pub fn parse_list(codes: &str) -> Result<Vec<Self>> {
        codes.split(',').filter(|c| !c.trim().is_empty()).map(Self::parse).collect()
    }

    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        LANGS[self.0 as usize].0
    }

    /// The FLORES-200 code (`eng_Latn`).
    pub fn flores(self) -> &'static str {
        LANGS[self.0 as usize].1
    }

    /// The English name.
    pub fn name(self) -> &'static str {
        LANGS[self.0 as usize].2
    }

    /// Every language lsn knows.
    pub fn all() -> impl Iterator<Item = Lang> {
        (0..LANGS.len()).map(|i| Lang(i as u16))
    }
}

impl fmt::Debug for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lang({})", self.code())
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Lang {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Lang {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Lang::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(LANGS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn parses_iso_and_flores_codes() {
        let hi = Lang::parse("hi").unwrap();
        assert_eq!(hi.flores(), "hin_Deva");
        assert_eq!(Lang::parse("hin_Deva").unwrap(), hi);
        assert_eq!(Lang::parse(" EN ").unwrap().code(), "en");
        assert_eq!(serde_json::to_string(&hi).unwrap(), "\"hi\"");
        assert_eq!(serde_json::from_str::<Lang>("\"sw\"").unwrap().name(), "Swahili");
    }

    #[test]
    fn unknown_code_lists_known_ones() {
        let e = Lang::parse("xx").unwrap_err().to_string();
        assert!(e.contains("\"xx\"") && e.contains("en") && e.contains("zh"), "{e}");
        assert!(Lang::parse_list("en,xx").is_err());
        assert_eq!(Lang::parse_list("en,hi").unwrap().len(), 2);
    }
}
