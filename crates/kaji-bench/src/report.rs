//! What a benchmark hands back to be written into `docs/benchmarks.md`:
//! sections of prose, markdown tables and plots (rendered to PNG).
//!
//! Rendering: [`markdown`] turns sections into markdown, [`write_plots`]
//! draws their plots as PNGs with `plotters` (text through `ab_glyph` and
//! DejaVu Sans read at run time, so no system font library is linked), and
//! [`splice`] puts a generated report between [`BEGIN`] and [`END`] in an
//! existing document without touching anything outside them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

/// One section of the report, e.g. "API server".
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The `##` heading.
    pub title: String,
    /// What was measured and how, in a paragraph or two.
    pub what: String,
    /// The command that reproduces exactly this section.
    pub command: String,
    /// Tables, in order.
    pub tables: Vec<Table>,
    /// Plots, in order, each written as a PNG next to the report.
    pub plots: Vec<Plot>,
    /// Findings worth reading: ratios against a peer, published figures
    /// compared, anything that looked wrong. One bullet each.
    pub notes: Vec<String>,
}

impl Section {
    /// A section for a benchmark that failed before it measured anything:
    /// the run goes on, and the report says what failed.
    pub fn failed(title: &str, command: &str, error: &anyhow::Error) -> Section {
        Section {
            title: title.to_string(),
            what: "This benchmark failed; nothing was measured.".to_string(),
            command: command.to_string(),
            notes: vec![format!("**Error:** `{}`", one_line(&format!("{error:#}")))],
            ..Section::default()
        }
    }
}

/// A markdown table. Cells are already formatted.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// A line above the table (may be empty).
    pub caption: String,
    /// Column names; a column whose name starts with `>` is right-aligned
    /// (the `>` is not printed).
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with `caption` and `header` (see [`Table::header`] for `>`).
    pub fn new(caption: impl Into<String>, header: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; short rows are padded with empty cells.
    pub fn push(&mut self, mut cells: Vec<String>) {
        cells.resize(self.header.len().max(cells.len()), String::new());
        self.rows.push(cells);
    }
}

/// A plot: grouped bars (one group per category) or lines over x.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name of the PNG, unique in the report, e.g. `api-creates.png`.
    pub file: String,
    /// Title drawn above the plot.
    pub title: String,
    /// Axis labels.
    pub x_label: String,
    /// The y axis label, with its unit.
    pub y_label: String,
    /// What is drawn.
    pub kind: PlotKind,
    /// The series; for bars, each series is one colour within every group.
    pub series: Vec<Series>,
}

/// How a plot draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// Grouped bars: the x values of the points are category names.
    Bars,
    /// Lines over a numeric x axis.
    Lines,
}

/// One named series of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend entry, e.g. `kaji (embedded)` or `etcd 3.4`.
    pub name: String,
    /// Points as (x, y). For [`PlotKind::Bars`] x is a category label; for
    /// [`PlotKind::Lines`] it is a number formatted as a string.
    pub points: Vec<(String, f64)>,
}

/// The line before the generated part of `docs/benchmarks.md`.
pub const BEGIN: &str = "<!-- kaji-bench:begin -->";
/// The line after it.
pub const END: &str = "<!-- kaji-bench:end -->";

/// A figure with the precision its size deserves: `40075`, `12.3`, `0.42`.
pub fn fig(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    match v.abs() {
        0.0 => "0".to_string(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.1 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// `a ÷ b` as `1.23×`, or `—` when `b` is not positive or either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}×", a / b),
        _ => "—".to_string(),
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = s.replace('`', "'");
    if s.chars().count() > 400 {
        s.chars().take(400).collect::<String>() + "…"
    } else {
        s
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One table as markdown (no trailing blank line).
pub fn table_markdown(t: &Table) -> String {
    let mut out = String::new();
    if !t.caption.is_empty() {
        let _ = writeln!(out, "{}\n", t.caption);
    }
    let names: Vec<String> = t
        .header
        .iter()
        .map(|h| cell(h.strip_prefix('>').unwrap_or(h)))
        .collect();
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let aligns: Vec<&str> = t
        .header
        .iter()
        .map(|h| if h.starts_with('>') { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for row in &t.rows {
        let mut cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        cells.resize(t.header.len().max(cells.len()), String::new());
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A section as markdown: heading, what, command, tables, plots (those in
/// `drawn`, by file name; the others are named as not drawn), notes.
pub fn section_markdown(s: &Section, drawn: &HashSet<String>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", s.title);
    if !s.what.trim().is_empty() {
        let _ = writeln!(out, "{}\n", s.what.trim());
    }
    if !s.command.is_empty() {
        let _ = writeln!(out, "```sh\n{}\n```\n", s.command.trim());
    }
    for t in &s.tables {
        let _ = writeln!(out, "{}", table_markdown(t));
    }
    for p in &s.plots {
        if drawn.contains(&p.file) {
            let _ = writeln!(out, "![{}](benchmarks/{})\n", p.title, p.file);
        } else {
            let _ = writeln!(
                out,
                "(Plot `{}` not drawn: see the run's output.)\n",
                p.file
            );
        }
    }
    for n in &s.notes {
        let _ = writeln!(out, "- {}", n.trim());
    }
    if !s.notes.is_empty() {
        out.push('\n');
    }
    out
}

/// Every section as markdown, in order.
pub fn markdown(sections: &[Section], drawn: &HashSet<String>) -> String {
    sections
        .iter()
        .map(|s| section_markdown(s, drawn))
        .collect::<Vec<_>>()
        .join("")
}

/// Replaces what lies between [`BEGIN`] and [`END`] in `doc` by `generated`.
/// Without the markers, the generated part goes first, after the document's
/// `# ` title if it starts with one.
pub fn splice(doc: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n{}\n{END}", generated.trim_end());
    if let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) {
        if b < e {
            return format!("{}{block}{}", &doc[..b], &doc[e + END.len()..]);
        }
    }
    if doc.starts_with("# ") {
        let end_of_title = doc.find('\n').map_or(doc.len(), |i| i + 1);
        format!(
            "{}\n{block}\n\n{}",
            &doc[..end_of_title],
            doc[end_of_title..].trim_start()
        )
    } else {
        format!("{block}\n\n{doc}")
    }
}

// ---------------------------------------------------------------------------
// Plots

/// Where the fonts come from. DejaVu Sans is in Debian's `fonts-dejavu-core`.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
/// Size of every PNG.
const SIZE: (u32, u32) = (800, 450);

/// Registers DejaVu Sans as plotters' `sans-serif` once per process.
fn fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        use plotters::style::{register_font, FontStyle};
        let path = std::env::var("KAJI_BENCH_FONT").unwrap_or_else(|_| FONT.to_string());
        let normal = std::fs::read(&path).map_err(|e| {
            format!("no font at {path} ({e}); install fonts-dejavu-core or set KAJI_BENCH_FONT")
        })?;
        let normal: &'static [u8] = Box::leak(normal.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, normal)
            .map_err(|_| format!("{path} is not a font plotters can read"))?;
        if let Ok(bold) = std::fs::read(FONT_BOLD) {
            let _ = register_font(
                "sans-serif",
                FontStyle::Bold,
                Box::leak(bold.into_boxed_slice()),
            );
        }
        Ok(())
    })
    .clone()
}

/// Draws every plot of `sections` into `dir` as `<file>`; returns the files
/// drawn. A plot that cannot be drawn is reported on stderr and skipped.
pub fn write_plots(sections: &[Section], dir: &Path) -> HashSet<String> {
    let mut drawn = HashSet::new();
    let plots: Vec<&Plot> = sections.iter().flat_map(|s| &s.plots).collect();
    if plots.is_empty() {
        return drawn;
    }
    if let Err(e) = fonts() {
        eprintln!("plots not drawn: {e}");
        return drawn;
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("plots not drawn: creating {}: {e}", dir.display());
        return drawn;
    }
    for p in plots {
        let path = dir.join(&p.file);
        match draw(p, &path) {
            Ok(()) => {
                drawn.insert(p.file.clone());
            }
            Err(e) => eprintln!("plot {} not drawn: {e:#}", p.file),
        }
    }
    drawn
}

/// Colours of the series, in order (kaji first, its peer second).
const COLOURS: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
];

fn colour(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = COLOURS[i % COLOURS.len()];
    plotters::style::RGBColor(r, g, b)
}

/// A value short enough to print above a bar: `40k`, `4.1k`, `123`, `1.5`.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        _ => fig(v),
    }
}

/// An axis tick: whole numbers without decimals, others as [`short`].
fn axis(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e4 {
        format!("{v:.0}")
    } else {
        short(v)
    }
}

/// Splits `label` into lines of at most about `width` characters, at spaces.
fn wrap(label: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in label.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn draw(p: &Plot, path: &Path) -> anyhow::Result<()> {
    match p.kind {
        PlotKind::Bars => draw_bars(p, path),
        PlotKind::Lines => draw_lines(p, path),
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

fn draw_bars(p: &Plot, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let mut cats: Vec<&str> = Vec::new();
    for s in &p.series {
        for (x, _) in &s.points {
            if !cats.contains(&x.as_str()) {
                cats.push(x);
            }
        }
    }
    anyhow::ensure!(!cats.is_empty(), "no data");
    let ymax = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    let n = cats.len();
    let k = p.series.len().max(1);
    // Headroom for the value labels and the legend (about 18 px per entry).
    let ymax = if ymax > 0.0 {
        ymax * (1.12 + 0.075 * k as f64)
    } else {
        1.0
    };
    let group_px = (SIZE.0 as f64 - 100.0) / n as f64;
    let chars = ((group_px / 7.0) as usize).max(6);
    let label_lines = cats
        .iter()
        .map(|c| wrap(c, chars).len())
        .max()
        .unwrap_or(1)
        .min(4);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&p.title, ("sans-serif", 20).into_font())
        .margin(10)
        .margin_right(20)
        .x_label_area_size(18 + 15 * label_lines as u32 + 18)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .y_label_formatter(&|v| axis(*v))
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    let width = 0.8 / k as f64;
    let value_font = ("sans-serif", if k * n > 16 { 10 } else { 12 })
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (si, s) in p.series.iter().enumerate() {
        let c = colour(si);
        let bars: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(_, y)| y.is_finite())
            .filter_map(|(x, y)| {
                let ci = cats.iter().position(|c| c == x)?;
                Some((ci as f64 + 0.1 + width * si as f64, *y))
            })
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x0, y)| {
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.92, y)], c.filled())
                }),
            )
            .map_err(plot_err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        for &(x0, y) in &bars {
            let (px, py) = chart.backend_coord(&(x0 + width * 0.46, y));
            root.draw(&Text::new(short(y), (px, py - 2), value_font.clone()))
                .map_err(plot_err)?;
        }
    }
    let cat_font = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (ci, cat) in cats.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, 0.0));
        for (li, line) in wrap(cat, chars).iter().take(4).enumerate() {
            root.draw(&Text::new(
                line.clone(),
                (px, py + 6 + 15 * li as i32),
                cat_font.clone(),
            ))
            .map_err(plot_err)?;
        }
    }
    if p.series.len() > 1 || !p.series.iter().all(|s| s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn draw_lines(p: &Plot, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let series: Vec<(&str, Vec<(f64, f64)>)> = p
        .series
        .iter()
        .map(|s| {
            let pts = s
                .points
                .iter()
                .filter_map(|(x, y)| Some((x.trim().parse::<f64>().ok()?, *y)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (s.name.as_str(), pts)
        })
        .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    anyhow::ensure!(!all.is_empty(), "no data");
    let (xmin, xmax) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (xmin, xmax) = if xmax > xmin {
        (xmin, xmax)
    } else {
        (xmin - 1.0, xmax + 1.0)
    };
    let ymax = all.iter().map(|(_, y)| *y).fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&p.title, ("sans-serif", 20).into_font())
        .margin(10)
        .margin_right(25)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax, 0f64..ymax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&|v| axis(*v))
        .y_label_formatter(&|v| axis(*v))
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    for (si, (name, pts)) in series.iter().enumerate() {
        let c = colour(si);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The run's header

/// Where and when a run happened, for the top of the generated report.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// UTC date and time of the start.
    pub date: String,
    /// `nproc`, the CPU model, memory, kernel.
    pub machine: String,
    /// `/proc/loadavg`'s first three fields at the start.
    pub load_start: String,
    /// The same at the end.
    pub load_end: String,
    /// The command as run.
    pub command: String,
    /// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes.
    pub commit: String,
    /// Wall-clock time of the whole run.
    pub elapsed: std::time::Duration,
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl RunInfo {
    /// What can be known at the start of a run of `command`.
    pub fn start(command: String) -> RunInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(String::new(), |kib| {
                format!(", {:.1} GiB RAM", kib / 1024.0 / 1024.0)
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".to_string(), |s| s.trim().to_string());
        let commit = match sh("git", &["rev-parse", "--short", "HEAD"]) {
            Some(c) => {
                let dirty = sh("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{c}-dirty")
                } else {
                    c
                }
            }
            None => "unknown (not a git checkout)".to_string(),
        };
        RunInfo {
            date: sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            machine: format!("{cores} cores ({model}){mem_gib}, Linux {kernel}"),
            load_start: load_average(),
            load_end: String::new(),
            command,
            commit,
            elapsed: std::time::Duration::ZERO,
        }
    }

    /// The generated report's header, in markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "*Generated by `kaji-bench`; everything between the `kaji-bench` markers is \
             rewritten by each run. Do not edit it by hand.*\n"
        );
        let mut t = Table::new("", &["run", "value"]);
        t.push(vec!["date".into(), self.date.clone()]);
        t.push(vec!["machine".into(), self.machine.clone()]);
        t.push(vec![
            "load average (1, 5, 15 min) at start / end".into(),
            format!("{} / {}", self.load_start, self.load_end),
        ]);
        t.push(vec!["git commit".into(), format!("`{}`", self.commit)]);
        t.push(vec!["command".into(), format!("`{}`", self.command)]);
        t.push(vec![
            "wall time of the whole run".into(),
            format!(
                "{:.0} min {:02.0} s",
                (self.elapsed.as_secs() / 60) as f64,
                (self.elapsed.as_secs() % 60) as f64
            ),
        ]);
        out += &table_markdown(&t);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_should_align_columns_marked_with_a_chevron_and_escape_pipes() {
        let mut t = Table::new("cap", &["name", ">ops/s"]);
        t.push(vec!["a|b".into(), "12".into()]);
        t.push(vec!["short".into()]);
        let md = table_markdown(&t);
        assert_eq!(
            md,
            "cap\n\n| name | ops/s |\n| --- | ---: |\n| a\\|b | 12 |\n| short |  |\n"
        );
    }

    #[test]
    fn splice_should_replace_only_between_the_markers() {
        let doc = format!("# B\n\nintro\n{BEGIN}\nold\n{END}\n\n## Notes\nkept\n");
        let out = splice(&doc, "new\n");
        assert_eq!(
            out,
            format!("# B\n\nintro\n{BEGIN}\nnew\n{END}\n\n## Notes\nkept\n")
        );
        assert_eq!(splice(&out, "new\n"), out);
    }

    #[test]
    fn splice_without_markers_should_go_after_the_title() {
        let out = splice("# B\n\nold text\n", "gen");
        assert_eq!(out, format!("# B\n\n{BEGIN}\ngen\n{END}\n\nold text\n"));
    }

    #[test]
    fn sections_should_render_command_plots_and_notes() {
        let s = Section {
            title: "T".into(),
            what: "W".into(),
            command: "cargo run".into(),
            plots: vec![Plot {
                file: "a.png".into(),
                title: "A".into(),
                x_label: String::new(),
                y_label: String::new(),
                kind: PlotKind::Bars,
                series: vec![],
            }],
            notes: vec!["n1".into()],
            ..Section::default()
        };
        let drawn: HashSet<String> = ["a.png".to_string()].into();
        let md = section_markdown(&s, &drawn);
        assert_eq!(
            md,
            "## T\n\nW\n\n```sh\ncargo run\n```\n\n![A](benchmarks/a.png)\n\n- n1\n\n"
        );
    }

    #[test]
    fn figures_should_keep_three_significant_digits_or_so() {
        assert_eq!(fig(40075.4), "40075");
        assert_eq!(fig(12.34), "12.3");
        assert_eq!(fig(0.42), "0.42");
        assert_eq!(short(40075.0), "40k");
        assert_eq!(short(4075.0), "4.1k");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(Some(3.0), Some(0.0)), "—");
    }

    #[test]
    fn wrap_should_split_long_labels_at_spaces() {
        assert_eq!(
            wrap("create ConfigMap 64 clients", 16),
            ["create ConfigMap", "64 clients"]
        );
    }

    #[test]
    fn plots_should_draw_when_the_font_is_there() {
        if fonts().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let series = |name: &str, k: f64| Series {
            name: name.into(),
            points: vec![("1".into(), k), ("64".into(), 4.0 * k)],
        };
        for kind in [PlotKind::Bars, PlotKind::Lines] {
            let p = Plot {
                file: format!("{kind:?}.png"),
                title: "t".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                kind,
                series: vec![series("a", 1.0), series("b", 2.0)],
            };
            let s = Section {
                plots: vec![p],
                ..Section::default()
            };
            let drawn = write_plots(&[s], dir.path());
            assert!(drawn.contains(&format!("{kind:?}.png")));
        }
    }
}
