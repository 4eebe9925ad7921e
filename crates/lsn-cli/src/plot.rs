//! Figures (SVG and PNG): the number of selected neurons per layer and language, as a heatmap plus a line chart;
//! and language × language matrices on a diverging scale ([`matrix`], the PPXC heatmaps).

pub mod charts;
pub mod matrix;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, FontTransform, register_font};

/// One series per language: neurons selected per layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCounts {
    pub lang: String,
    pub per_layer: Vec<usize>,
}

/// The files a plot was written to; `png` is `None` when no font was found to draw its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    pub svg: PathBuf,
    pub png: Option<PathBuf>,
}

/// Writes `<stem>.svg` and `<stem>.png`: the number of selected neurons per layer for each language.
///
/// The left panel is a heatmap (x = language, y = layer with layer 0 at the bottom, white → dark blue by count,
/// each cell annotated with its count); the right panel draws one line per language (x = layer, y = count).
/// The PNG needs a TrueType font (`$LSN_FONT`, else a few common system paths); without one only the SVG is
/// written and `png` is `None`.
pub fn neurons_per_layer(title: &str, series: &[LayerCounts], stem: &Path) -> Result<PlotFiles> {
    write(&Figure::new(title, series)?, stem)
}

/// A figure both backends can draw.
pub(crate) trait Drawing {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Writes `fig` as `<stem>.svg` and, when a TrueType font is found, `<stem>.png` (see [`neurons_per_layer`]).
pub(crate) fn write(fig: &impl Drawing, stem: &Path) -> Result<PlotFiles> {
    let (width, height) = fig.size();
    let svg = with_suffix(stem, ".svg");
    // Registered before the SVG is drawn too: figures laid out by plotters' chart builder measure their text.
    let font = png_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        fig.draw(&root).and_then(|()| root.present()).map_err(|e| render_error(&svg, e))?;
    }
    crate::fsutil::write_atomic(&svg, text.as_bytes())?;

    let Some(font) = font else {
        tracing::warn!(
            "no TrueType font found, so only {} was written and no PNG; set LSN_FONT=path/to/font.ttf \
             (e.g. DejaVuSans.ttf from the fonts-dejavu-core package) to get one",
            svg.display()
        );
        return Ok(PlotFiles { svg, png: None });
    };
    tracing::debug!("drawing PNG text with {}", font.display());
    let png = with_suffix(stem, ".png");
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        fig.draw(&root).and_then(|()| root.present()).map_err(|e| render_error(&png, e))?;
    }
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&pixels, width, height, image::ColorType::Rgb8)
        .with_context(|| format!("cannot encode {} as PNG", png.display()))?;
    crate::fsutil::write_atomic(&png, &bytes)?;
    Ok(PlotFiles { svg, png: Some(png) })
}

/// `stem` with `suffix` appended (not replacing an extension: `fig.v2` → `fig.v2.svg`).
fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(stem.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn render_error(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw {}: {e}", path.display())
}

/// Font family every text element asks for; the PNG's TrueType font is registered under this name.
const FAMILY: &str = "sans-serif";

/// Fonts tried after `$LSN_FONT`, in order.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Finds and registers (once per process) the font the PNG's text is drawn with; `None` if there is none.
fn png_font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let from_env = std::env::var_os("LSN_FONT").filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(path) = &from_env {
            match load_font(path) {
                Ok(()) => return from_env,
                Err(e) => tracing::warn!("LSN_FONT: {e:#}; trying the system fonts instead"),
            }
        }
        FONT_PATHS.iter().map(PathBuf::from).find(|p| p.is_file() && load_font(p).is_ok())
    })
    .as_deref()
}

fn load_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read font {}", path.display()))?;
    // plotters keeps fonts for the life of the process; this runs at most once per candidate file.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType/OpenType font", path.display()))
}

// Layout, in pixels.
/// Heatmap cells are this wide, or up to `CELL_W_MAX` to fit the language names across.
const CELL_W: i32 = 60;
const CELL_W_MAX: i32 = 84;
const CELL_H: i32 = 28;
const TITLE_H: i32 = 50;
const LABEL_MAX_CHARS: usize = 18;
const LANG_FONT: f64 = 13.0;
const TICK_FONT: f64 = 12.0;
const COUNT_FONT: f64 = 12.0;
const AXIS_FONT: f64 = 14.0;
const TITLE_FONT: f64 = 18.0;
const LEGEND_ROW: i32 = 20;
const CHART_W: i32 = 380;

/// Approximate width of `s` in a sans-serif font of `size` px (no font metrics needed, so the SVG needs no font).
fn text_w(s: &str, size: f64) -> i32 {
    (s.chars().count() as f64 * size * 0.62).ceil() as i32
}

/// Text whose em is about `px` pixels (plotters shrinks the requested size by ~1.2 for both backends).
fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, px * 1.2))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max - 1).chain(['…']).collect() }
}

/// White → dark blue (the "Blues" colour map), `t` in `[0, 1]`.
fn blues(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Line colours: Tableau's 20, the strong ten first.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

const GRID: RGBColor = RGBColor(225, 225, 225);
const AXIS: RGBColor = RGBColor(60, 60, 60);

/// A tick step of 1, 2 or 5 × 10^k giving about `target` ticks over `0..=max` (at least 1).
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    mag * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// Where everything goes; both backends draw from the same layout.
struct Figure<'a> {
    title: &'a str,
    labels: Vec<String>,
    counts: Vec<&'a [usize]>,
    layers: usize,
    max: usize,
    width: u32,
    height: u32,
    /// Top-left corner of the heatmap's cells, and their width.
    hm: (i32, i32),
    cell_w: i32,
    /// Language labels drawn vertically (they are wider than a cell).
    vertical_labels: bool,
    lang_label_h: i32,
    colorbar: (i32, i32, i32),
    /// Line chart plotting rectangle: x0, y0, x1, y1.
    chart: (i32, i32, i32, i32),
    y_max: f64,
    y_step: f64,
    legend_x: i32,
}

impl Drawing for Figure<'_> {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        self.draw_all(root)
    }
}

impl<'a> Figure<'a> {
    fn new(title: &'a str, series: &'a [LayerCounts]) -> Result<Self> {
        let Some(first) = series.first() else {
            bail!("nothing to plot for {title:?}: no languages were given (select neurons for at least one language)")
        };
        let layers = first.per_layer.len();
        if layers == 0 {
            bail!("nothing to plot for {title:?}: language {:?} has no layers", first.lang);
        }
        if let Some(bad) = series.iter().find(|s| s.per_layer.len() != layers) {
            bail!(
                "cannot plot {title:?}: language {:?} has counts for {} layers but {:?} has {layers}; \
                 every language must cover the same layers",
                bad.lang,
                bad.per_layer.len(),
                first.lang
            );
        }
        let k = series.len() as i32;
        let l = layers as i32;
        let labels: Vec<String> = series.iter().map(|s| truncate(&s.lang, LABEL_MAX_CHARS)).collect();
        let counts = series.iter().map(|s| s.per_layer.as_slice()).collect();
        let max = series.iter().flat_map(|s| s.per_layer.iter().copied()).max().unwrap_or(0);
        let label_w = labels.iter().map(|s| text_w(s, LANG_FONT)).max().unwrap_or(0);

        // Heatmap, with the "layer" axis title and layer numbers on its left.
        let hm_x = 34 + text_w(&(layers - 1).to_string(), TICK_FONT) + 10;
        let hm_y = TITLE_H;
        // Widen the cells a little to keep the names across; names too long even for that go vertical.
        let vertical_labels = label_w + 12 > CELL_W_MAX;
        let cell_w = if vertical_labels { CELL_W } else { (label_w + 12).max(CELL_W) };
        let hm_w = k * cell_w;
        let hm_h = l * CELL_H;
        let lang_label_h = if vertical_labels { label_w + 14 } else { 24 };
        let hm_bottom = hm_y + hm_h + lang_label_h + 30;

        // Colour bar: x, top, height.
        let colorbar = (hm_x + hm_w + 16, hm_y, hm_h.min(320));
        let colorbar_right = colorbar.0 + 14 + 6 + text_w(&max.to_string(), TICK_FONT);

        // Line chart, with a legend on its right.
        let y_step = nice_step(max as f64, 5.0);
        let y_max = ((max as f64 / y_step).ceil() * y_step).max(y_step);
        let y_tick_w = text_w(&format!("{y_max}"), TICK_FONT);
        let cx0 = colorbar_right + 40 + 22 + y_tick_w;
        let cy0 = hm_y;
        let chart = (cx0, cy0, cx0 + CHART_W, cy0 + hm_h.clamp(220, 420));
        let chart_bottom = chart.3 + 52;
        let legend_x = chart.2 + 20;
        let legend_bottom = hm_y + k * LEGEND_ROW + 10;
        let width = legend_x + 30 + label_w + 16;
        let height = hm_bottom.max(chart_bottom).max(legend_bottom) + 8;
        Ok(Self {
            title,
            labels,
            counts,
            layers,
            max,
            width: width as u32,
            height: height as u32,
            hm: (hm_x, hm_y),
            cell_w,
            vertical_labels,
            lang_label_h,
            colorbar,
            chart,
            y_max,
            y_step,
            legend_x,
        })
    }

    fn draw_all<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let title = font(TITLE_FONT).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw_text(self.title, &title, (self.width as i32 / 2, TITLE_H / 2 - 2))?;
        self.draw_heatmap(root)?;
        self.draw_colorbar(root)?;
        self.draw_chart(root)
    }

    fn draw_heatmap<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (x0, y0) = self.hm;
        let cell_w = self.cell_w;
        let k = self.labels.len() as i32;
        let l = self.layers as i32;
        let (x1, y1) = (x0 + k * cell_w, y0 + l * CELL_H);
        let tick = font(TICK_FONT).color(&BLACK);
        for (c, counts) in self.counts.iter().enumerate() {
            let cx = x0 + c as i32 * cell_w;
            for (layer, &n) in counts.iter().enumerate() {
                // Layer 0 at the bottom.
                let cy = y0 + (l - 1 - layer as i32) * CELL_H;
                let t = if self.max == 0 { 0.0 } else { n as f64 / self.max as f64 };
                root.draw(&Rectangle::new([(cx, cy), (cx + cell_w, cy + CELL_H)], blues(t).filled()))?;
                let s = n.to_string();
                let size = if text_w(&s, COUNT_FONT) <= cell_w - 6 { COUNT_FONT } else { COUNT_FONT * 0.75 };
                let ink = if t > 0.55 { WHITE } else { BLACK };
                let style = font(size).color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                root.draw_text(&s, &style, (cx + cell_w / 2, cy + CELL_H / 2))?;
            }
        }
        // Cell borders, then the frame.
        for c in 1..k {
            let x = x0 + c * cell_w;
            root.draw(&PathElement::new(vec![(x, y0), (x, y1)], WHITE.stroke_width(1)))?;
        }
        for r in 1..l {
            let y = y0 + r * CELL_H;
            root.draw(&PathElement::new(vec![(x0, y), (x1, y)], WHITE.stroke_width(1)))?;
        }
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], AXIS.stroke_width(1)))?;

        // Layer numbers, one per row.
        let right = tick.pos(Pos::new(HPos::Right, VPos::Center));
        for layer in 0..l {
            let cy = y0 + (l - 1 - layer) * CELL_H + CELL_H / 2;
            root.draw_text(&layer.to_string(), &right, (x0 - 6, cy))?;
        }
        // Language names under their columns.
        let lang = font(LANG_FONT).color(&BLACK);
        for (c, label) in self.labels.iter().enumerate() {
            let cx = x0 + c as i32 * cell_w + cell_w / 2;
            if self.vertical_labels {
                let style = lang.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
                root.draw_text(label, &style, (cx, y1 + 8))?;
            } else {
                root.draw_text(label, &lang.pos(Pos::new(HPos::Center, VPos::Top)), (cx, y1 + 7))?;
            }
        }
        // Axis titles.
        let axis = font(AXIS_FONT).color(&BLACK);
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw_text("language", &axis.pos(centre), ((x0 + x1) / 2, y1 + self.lang_label_h + 14))?;
        let vertical = axis.transform(FontTransform::Rotate270).pos(centre);
        root.draw_text("layer", &vertical, (14, (y0 + y1) / 2))?;
        Ok(())
    }

    fn draw_colorbar<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (x, top, h) = self.colorbar;
        for i in 0..h {
            let t = 1.0 - i as f64 / (h - 1).max(1) as f64;
            root.draw(&Rectangle::new([(x, top + i), (x + 14, top + i + 1)], blues(t).filled()))?;
        }
        root.draw(&Rectangle::new([(x, top), (x + 14, top + h)], AXIS.stroke_width(1)))?;
        let style = font(TICK_FONT).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        let marks: &[usize] = if self.max == 0 { &[0] } else { &[0, self.max] };
        for &m in marks {
            let y = top + h - 1 - (m as f64 / self.max.max(1) as f64 * (h - 1) as f64).round() as i32;
            root.draw(&PathElement::new(vec![(x + 14, y), (x + 18, y)], AXIS.stroke_width(1)))?;
            root.draw_text(&m.to_string(), &style, (x + 20, y))?;
        }
        Ok(())
    }

    fn draw_chart<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (x0, y0, x1, y1) = self.chart;
        let last = (self.layers - 1).max(1) as f64;
        let px = |layer: usize| {
            if self.layers == 1 { (x0 + x1) / 2 } else { x0 + (layer as f64 / last * (x1 - x0) as f64).round() as i32 }
        };
        let py = |v: f64| y1 - (v / self.y_max * (y1 - y0) as f64).round() as i32;
        let tick = font(TICK_FONT).color(&BLACK);

        // Horizontal grid and count ticks.
        let right = tick.pos(Pos::new(HPos::Right, VPos::Center));
        let mut v = 0.0;
        while v <= self.y_max + 1e-9 {
            let y = py(v);
            root.draw(&PathElement::new(vec![(x0, y), (x1, y)], GRID.stroke_width(1)))?;
            root.draw_text(&format!("{v}"), &right, (x0 - 6, y))?;
            v += self.y_step;
        }
        // Layer ticks.
        let step = nice_step(last, 8.0) as usize;
        let below = tick.pos(Pos::new(HPos::Center, VPos::Top));
        for layer in (0..self.layers).step_by(step.max(1)) {
            let x = px(layer);
            root.draw(&PathElement::new(vec![(x, y1), (x, y1 + 4)], AXIS.stroke_width(1)))?;
            root.draw_text(&layer.to_string(), &below, (x, y1 + 7))?;
        }
        // One line per language.
        for (i, counts) in self.counts.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<(i32, i32)> = counts.iter().enumerate().map(|(l, &n)| (px(l), py(n as f64))).collect();
            if points.len() == 1 {
                root.draw(&Circle::new(points[0], 3, colour.filled()))?;
            } else {
                root.draw(&PathElement::new(points, colour.stroke_width(2)))?;
            }
        }
        // Axes.
        root.draw(&PathElement::new(vec![(x0, y0), (x0, y1), (x1, y1)], AXIS.stroke_width(1)))?;
        let axis = font(AXIS_FONT).color(&BLACK);
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw_text("layer", &axis.pos(centre), ((x0 + x1) / 2, y1 + 36))?;
        let y_label_x = x0 - 16 - text_w(&format!("{}", self.y_max), TICK_FONT);
        let vertical = axis.transform(FontTransform::Rotate270).pos(centre);
        root.draw_text("neurons", &vertical, (y_label_x, (y0 + y1) / 2))?;

        // Legend.
        let style = font(LANG_FONT).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, label) in self.labels.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let y = y0 + 8 + i as i32 * LEGEND_ROW;
            root.draw(&PathElement::new(vec![(self.legend_x, y), (self.legend_x + 22, y)], colour.stroke_width(3)))?;
            root.draw_text(label, &style, (self.legend_x + 30, y))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<LayerCounts> {
        // U-shaped like the paper: many language-specific neurons in the first and last layers.
        let shape = |scale: f64, l: usize| -> usize {
            let x = l as f64 / 17.0;
            (scale * (0.15 + 2.5 * (x - 0.45).powi(2) + 0.8 * (-(x - 1.0).powi(2) * 40.0).exp())).round() as usize
        };
        [("eng_Latn", 40.0), ("zho_Hans", 260.0), ("fra_Latn", 120.0)]
            .iter()
            .map(|&(lang, scale)| LayerCounts {
                lang: lang.into(),
                per_layer: (0..18).map(|l| shape(scale, l)).collect(),
            })
            .collect()
    }

    /// The contents of every `<text>` element.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
            .collect()
    }

    #[test]
    fn plot_writes_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let series = example();
        let files = neurons_per_layer("Language-specific neurons per layer", &series, &dir.path().join("fig")).unwrap();
        assert_eq!(files.svg, dir.path().join("fig.svg"));
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..80]);
        let texts = svg_texts(&svg);
        for want in series.iter().map(|s| s.lang.as_str()).chain(["layer", "language", "0", "17"]) {
            assert!(texts.iter().any(|t| t == want), "SVG lacks the text {want:?}: {texts:?}");
        }
        let max = series.iter().flat_map(|s| s.per_layer.iter()).max().unwrap().to_string();
        assert!(texts.contains(&max), "SVG lacks the count {max}");

        let png = files.png.expect("no PNG: install fonts-dejavu-core or set LSN_FONT=path/to/font.ttf");
        assert_eq!(png, dir.path().join("fig.png"));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
        let fig = Figure::new("", &series).unwrap();
        assert_eq!(img.dimensions(), (fig.width, fig.height));
        let first = img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| p != first), "the PNG is a single flat colour");
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
        assert!(dark > 500, "the PNG has almost no text ({dark} dark pixels)");
        // Nothing left behind but the two figures.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn plot_unwritable_path_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let stem = file.join("fig");
        let err = neurons_per_layer("t", &example(), &stem).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&stem.with_extension("svg").display().to_string()), "{msg}");
    }

    #[test]
    fn plot_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("fig");
        let err = neurons_per_layer("t", &[], &stem).unwrap_err().to_string();
        assert!(err.contains("no languages"), "{err}");
        let ragged = [
            LayerCounts { lang: "en".into(), per_layer: vec![1, 2, 3] },
            LayerCounts { lang: "fr".into(), per_layer: vec![1, 2] },
        ];
        let err = neurons_per_layer("t", &ragged, &stem).unwrap_err().to_string();
        assert!(err.contains("\"fr\"") && err.contains("same layers"), "{err}");
        assert!(!stem.with_extension("svg").exists());
    }

    #[test]
    fn plot_stem_keeps_dots_and_big_figures_fit() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<LayerCounts> = (0..20)
            .map(|i| LayerCounts {
                lang: format!("language_{i:02}_Latn"),
                per_layer: (0..80).map(|l| (l * 37 + i * 101) % 1500).collect(),
            })
            .collect();
        let files = neurons_per_layer("big", &series, &dir.path().join("fig.v2")).unwrap();
        assert_eq!(files.svg, dir.path().join("fig.v2.svg"));
        let fig = Figure::new("big", &series).unwrap();
        assert!(fig.vertical_labels);
        assert!(fig.width < 2600 && fig.height < 2600, "{}x{}", fig.width, fig.height);
        // LSN_PLOT_EXAMPLE=/tmp/plot-example keeps both examples (SVG + PNG) there, to look at.
        if let Ok(path) = std::env::var("LSN_PLOT_EXAMPLE") {
            neurons_per_layer("Language-specific neurons per layer", &example(), Path::new(&path)).unwrap();
            neurons_per_layer("20 languages x 80 layers", &series, Path::new(&format!("{path}-big"))).unwrap();
        }
    }
}
