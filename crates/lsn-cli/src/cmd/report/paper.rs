//! The paper's own numbers (DESIGN §11, from the authors' result files), shown beside ours in the report.

/// XNLI accuracy (%), ActProb-90p neurons, FTL null; columns No Int, μ, P75, P90, P95, 0, P5, P10.
pub const XNLI_INTERVENTION: [(&str, &str, [f64; 8]); 6] = [
    ("Llama-3.1-8B", "vi", [80.61, 78.33, 78.91, 79.31, 79.57, 81.03, 76.54, 77.48]),
    ("Llama-3.1-8B", "hi", [75.00, 74.10, 72.68, 71.87, 71.23, 74.70, 75.02, 74.68]),
    ("Llama-3.1-8B", "ur", [70.03, 69.71, 69.79, 69.33, 68.75, 69.61, 69.49, 69.59]),
    ("Mistral-Nemo", "vi", [80.57, 67.43, 79.05, 81.11, 81.15, 80.81, 37.40, 40.79]),
    ("Mistral-Nemo", "hi", [76.06, 72.22, 73.76, 74.58, 74.46, 75.58, 62.40, 66.35]),
    ("Mistral-Nemo", "ur", [66.77, 65.97, 64.04, 61.34, 59.78, 66.41, 54.61, 61.64]),
];

/// A row of the paper's XQuAD table: model, language, (F1, EM) per column (`None` where the paper has no number).
pub type XquadRow = (&'static str, &'static str, [Option<(f64, f64)>; 8]);

/// XQuAD F1 / EM (%, the paper's token-id metric), same columns.
pub const XQUAD_INTERVENTION: [XquadRow; 6] = [
    (
        "Llama-3.1-8B",
        "vi",
        [
            Some((73.60, 41.18)),
            Some((73.04, 39.08)),
            Some((65.81, 25.63)),
            Some((64.91, 23.11)),
            Some((64.76, 23.53)),
            Some((73.82, 42.02)),
            Some((67.77, 33.19)),
            Some((70.32, 36.13)),
        ],
    ),
    (
        "Llama-3.1-8B",
        "hi",
        [
            Some((64.09, 38.73)),
            Some((60.73, 34.10)),
            Some((62.29, 34.68)),
            Some((62.80, 36.42)),
            Some((61.93, 31.79)),
            Some((62.88, 37.57)),
            Some((54.93, 23.12)),
            Some((58.63, 31.21)),
        ],
    ),
    (
        "Llama-3.1-8B",
        "zh",
        [
            Some((77.53, 55.88)),
            Some((80.67, 60.92)),
            Some((79.52, 58.82)),
            Some((78.77, 55.88)),
            Some((78.37, 55.88)),
            Some((78.47, 55.46)),
            Some((61.71, 39.92)),
            Some((73.63, 50.42)),
        ],
    ),
    (
        "Mistral-Nemo",
        "vi",
        [
            Some((74.57, 39.08)),
            Some((43.32, 11.34)),
            Some((62.81, 26.47)),
            Some((63.89, 28.99)),
            Some((48.53, 15.13)),
            Some((74.46, 38.66)),
            None,
            None,
        ],
    ),
    (
        "Mistral-Nemo",
        "hi",
        [
            Some((66.94, 38.33)),
            Some((54.44, 26.43)),
            Some((65.09, 34.36)),
            Some((68.96, 36.56)),
            Some((68.67, 37.44)),
            Some((63.84, 33.48)),
            None,
            None,
        ],
    ),
    (
        "Mistral-Nemo",
        "zh",
        [
            Some((74.97, 47.01)),
            Some((77.35, 45.73)),
            Some((69.93, 26.07)),
            Some((59.79, 20.09)),
            Some((54.91, 14.96)),
            Some((76.18, 47.86)),
            None,
            None,
        ],
    ),
];

/// XNLI accuracy (%) of Llama-3.1-8B's fine-tuning variants, LAPE neurons, no intervention: FTL null, en, target,
/// en+target.
pub const XNLI_FTL: [(&str, [f64; 4]); 3] =
    [("vi", [80.61, 80.17, 80.07, 80.09]), ("hi", [75.00, 74.90, 74.92, 74.88]), ("ur", [70.03, 69.85, 69.85, 69.93])];

/// XNLI accuracy (%) of Llama-3.1-8B with its LAPE neurons filled with μ, FTL null.
pub const XNLI_LAPE_MEAN: [(&str, f64); 3] = [("vi", 79.45), ("hi", 75.20), ("ur", 70.45)];

/// The column of `fill` in the paper's tables (No Int is column 0).
pub fn column(fill: &str) -> Option<usize> {
    super::super::reproduce::plan::FILLS.iter().position(|f| *f == fill).map(|i| i + 1)
}
