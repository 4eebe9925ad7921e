//! `cargo xtask gpu-check`: the CUDA paths of every backend, proven on one GPU by one command. It installs what the
//! GPU needs from PyPI, builds `lsn` with the CUDA features, runs the conformance suite, the benches against HF
//! transformers and PEFT, the smoke study and a bf16 capture of an 8B-shaped model on `--device cuda`, and writes one
//! table. `--dry-run` prints every step, runs those that need no GPU (set-up resolved, the CUDA build checked) and
//! prints the commands of the rest; `cargo xtask test` runs it so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{
    BENCH_BACKENDS, bench_processes, cargo, data_dir, hf_bench_commands, home, python, root, run_lines, runtime, venv,
};

pub const HELP: &str = "\
cargo xtask gpu-check [--dry-run | --setup-only] [--out DIR] [--skip STEP,...]

On a machine with an NVIDIA GPU and its driver, in one command:
  probe        the GPU (nvidia-smi) and a CUDA toolkit (nvcc, for candle's kernels)
  runtimes     cargo xtask setup and the two test models (as `cargo xtask test`)
  cuda-venv    .venv-cuda from PyPI: torch==2.13.0 with its CUDA libraries (tch loads libtorch_cuda.so from it),
               onnxruntime-gpu (ort's CUDA execution provider), transformers and PEFT (the HF side of the benches),
               and nvcc from PyPI's nvidia-cuda-nvcc wheel when the machine has no toolkit
  build        `lsn`, `lsn-conformance` and the benches, release, features ort-cuda (+ candle-cuda with nvcc), into
               target/cuda
  conformance  the whole conformance suite on --device cuda, every backend, against the CPU's HF goldens and
               tolerances (TF32 off)
  bench        the criterion benches on cuda (capture, generation, scoring, XNLI, XQuAD, training), one process per
               workload and backend, then HF transformers + PEFT on the same GPU, ids and batches
  smoke        lsn reproduce --scale smoke --device cuda
  bf16-8b      lsn random-model llama-3.1-8b --dtype bf16, then a bf16 capture on cuda per backend that holds bf16,
               with tokens/s and the peak GPU memory (nvidia-smi, every 100 ms)
Writes DIR (default target/gpu-check): gpu-check.md (the table), gpu-check.json, conformance-cuda.json,
bench-cuda.json. A step that fails is recorded and the steps that do not depend on it still run.

--dry-run   on a machine without a GPU: runs probe, runtimes, cuda-venv (resolved by `pip install --dry-run`,
            nothing downloaded but metadata), build (`cargo check` of the CUDA feature set; candle's only where
            nvcc is found), and prints the commands of the GPU steps
--setup-only  runs the steps before the GPU for real (installs .venv-cuda, builds target/cuda) and no other, on any
            machine: a GPU machine's set-up done ahead, or the set-up checked where there is no GPU
--skip      leave those steps out (e.g. --skip bf16-8b where 16 GB of disk are not free)";

/// One step: what it does, whether it needs a GPU (a dry run prints its commands and runs none), and the code.
struct Step {
    id: &'static str,
    what: &'static str,
    gpu: bool,
    run: fn(&mut Check) -> Result<String>,
}

const STEPS: &[Step] = &[
    Step { id: "probe", what: "the GPU (nvidia-smi) and a CUDA toolkit (nvcc)", gpu: false, run: probe },
    Step { id: "runtimes", what: "CPU runtimes and the test models", gpu: false, run: runtimes },
    Step {
        id: "cuda-venv",
        what: ".venv-cuda from PyPI (CUDA libtorch, onnxruntime-gpu, HF)",
        gpu: false,
        run: cuda_venv,
    },
    Step { id: "build", what: "release build with the CUDA features (a check in a dry run)", gpu: false, run: build },
    Step { id: "conformance", what: "conformance suite on cuda", gpu: true, run: conformance },
    Step { id: "bench", what: "benches on cuda against HF on the same GPU", gpu: true, run: bench },
    Step { id: "smoke", what: "lsn reproduce --scale smoke --device cuda", gpu: true, run: smoke },
    Step { id: "bf16-8b", what: "bf16 capture of the 8B-shaped random model", gpu: true, run: big_capture },
];

/// PyPI's nvcc (CUDA 13.0, as the torch wheel's CUDA), for candle's kernels where the machine has no toolkit: the
/// compiler (it pulls nvvm, the CRT headers and the runtime headers) and CCCL, whose `<nv/target>` cuda_fp16.h
/// includes. With it, candle-core's CUDA build checks and links without a toolkit (tried by hand here, 2026-12-07).
const NVCC_WHEELS: &[&str] = &["nvidia-cuda-nvcc==13.0.88", "nvidia-cuda-cccl==13.0.85"];

/// The CUDA libraries candle's cudarc links by their unversioned names (`-lcublas` …): a CUDA toolkit has those
/// names, the pip wheels only the versioned ones, so the build links through a folder of links to them. `libcuda`
/// is the driver's.
const LINK_NAMES: &[&str] = &["libcublas.so", "libcublasLt.so", "libcurand.so", "libnvrtc.so", "libcudart.so"];

/// Packages of xtask/fixtures/requirements.txt the GPU venv leaves out: torch and onnxruntime come as their CUDA
/// builds at the runtimes' pins, and the rest serve only the golden scripts.
const NOT_FOR_GPU: &[&str] = &["torch", "onnxruntime", "onnx", "gguf"];

/// The 8B-shaped model's capture: tokens of English FLORES text, rows of 512, 4 rows a batch.
const BIG_TOKENS: &str = "4096";

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Ran,
    Planned,
    Failed(String),
    Skipped(String),
}

struct Record {
    id: &'static str,
    what: &'static str,
    status: Status,
    secs: f64,
    summary: String,
    commands: Vec<String>,
}

#[derive(Debug, Clone)]
struct Gpu {
    name: String,
    driver: String,
    memory: String,
    /// `9.0` → `90`, as candle's kernels want it in CUDA_COMPUTE_CAP.
    compute_cap: String,
}

/// What the CUDA venv provides, once installed.
struct CudaVenv {
    python: PathBuf,
    libtorch: PathBuf,
    onnxruntime: PathBuf,
    /// Every `lib/` folder of its nvidia-* packages, for LD_LIBRARY_PATH (ort's CUDA provider and cudarc find the
    /// CUDA libraries there; libtorch finds its own through its rpath).
    lib_dirs: Vec<PathBuf>,
}

struct Check {
    dry: bool,
    /// The steps before the GPU only, for real.
    setup_only: bool,
    root: PathBuf,
    out: PathBuf,
    work: PathBuf,
    data: PathBuf,
    gpu: Option<Gpu>,
    /// nvcc and how it was found.
    nvcc: Option<(PathBuf, String)>,
    venv: Option<CudaVenv>,
    candle: bool,
    /// The folder of unversioned CUDA library links candle's link step reads (LIBRARY_PATH).
    link: Option<PathBuf>,
    built: bool,
    /// Whether the step now running may run its commands (false: a dry run's GPU step prints them).
    live: bool,
    commands: Vec<String>,
    results: BTreeMap<&'static str, Value>,
}

/// `cargo xtask gpu-check ARGS`.
pub fn gpu_check(args: &[String]) -> Result<()> {
    let mut dry = false;
    let mut setup_only = false;
    let mut out = None;
    let mut skip: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dry-run" => dry = true,
            "--setup-only" => setup_only = true,
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a folder")?)),
            "--skip" => skip.extend(it.next().context("--skip needs step names")?.split(',').map(str::to_owned)),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{HELP}"),
        }
    }
    ensure!(!(dry && setup_only), "--dry-run and --setup-only exclude each other: pick one");
    if let Some(bad) = skip.iter().find(|s| !STEPS.iter().any(|st| st.id == s.as_str())) {
        bail!("--skip {bad:?}: no such step (steps: {})", STEPS.iter().map(|s| s.id).collect::<Vec<_>>().join(", "));
    }
    let root = root();
    let out = out.unwrap_or_else(|| root.join("target/gpu-check"));
    let work = root.join("target/gpu-check-work");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut c = Check {
        dry,
        setup_only,
        data: data_dir()?,
        root,
        out,
        work,
        gpu: None,
        nvcc: None,
        venv: None,
        candle: false,
        link: None,
        built: false,
        live: true,
        commands: Vec::new(),
        results: BTreeMap::new(),
    };
    let t0 = Instant::now();
    let mut records = Vec::new();
    for step in STEPS {
        eprintln!(
            "\n== gpu-check: {} — {}{}",
            step.id,
            step.what,
            if dry && step.gpu { " (needs a GPU: planned)" } else { "" }
        );
        c.live = !(dry && step.gpu);
        c.commands.clear();
        let t = Instant::now();
        let (status, summary) = if skip.iter().any(|s| s == step.id) {
            (Status::Skipped("--skip".into()), String::new())
        } else if setup_only && step.gpu {
            (Status::Skipped("--setup-only".into()), String::new())
        } else if step.gpu && !c.built && !dry {
            (Status::Skipped("the build did not finish".into()), String::new())
        } else {
            match (step.run)(&mut c) {
                Ok(summary) => (if c.live { Status::Ran } else { Status::Planned }, summary),
                Err(e) => (Status::Failed(format!("{e:#}")), String::new()),
            }
        };
        if let Status::Failed(why) = &status {
            eprintln!("gpu-check: {} failed: {why}", step.id);
        }
        records.push(Record {
            id: step.id,
            what: step.what,
            status,
            secs: t.elapsed().as_secs_f64(),
            summary,
            commands: std::mem::take(&mut c.commands),
        });
        // Nothing can run on a GPU that is not there.
        if step.id == "probe" && !dry && c.gpu.is_none() && records.last().is_some_and(|r| r.status != Status::Ran) {
            break;
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let table = render(&c, &records, total);
    println!("\n{table}");
    write_outputs(&c, &records, &table, total)?;
    let failed: Vec<&str> = records.iter().filter(|r| matches!(r.status, Status::Failed(_))).map(|r| r.id).collect();
    ensure!(
        failed.is_empty(),
        "gpu-check: step(s) {} failed (see {})",
        failed.join(", "),
        c.out.join("gpu-check.md").display()
    );
    if dry {
        let planned = records.iter().filter(|r| r.status == Status::Planned).count();
        ensure!(
            records.iter().filter(|r| !r.status.eq(&Status::Skipped("--skip".into()))).all(|r| {
                let gpu = STEPS.iter().any(|s| s.id == r.id && s.gpu);
                r.status == if gpu { Status::Planned } else { Status::Ran }
            }),
            "gpu-check --dry-run: a step that needs no GPU did not run, or a GPU step ran"
        );
        eprintln!("gpu-check --dry-run: every step before the GPU ran; {planned} GPU step(s) planned");
    }
    Ok(())
}

impl Check {
    /// Runs `cmd` (echoed, recorded for the table); in a dry run's GPU step only records it. Ok(false) when not run.
    fn exec(&mut self, cmd: &mut Command) -> Result<bool> {
        self.exec_output(cmd).map(|lines| lines.is_some())
    }

    /// [`exec`](Self::exec), returning the command's stdout lines (passed through as they come); None when not run.
    fn exec_output(&mut self, cmd: &mut Command) -> Result<Option<Vec<String>>> {
        self.commands.push(show(cmd));
        if !self.live {
            eprintln!("would run: {}", show(cmd));
            return Ok(None);
        }
        run_lines(cmd).map(Some)
    }

    fn cuda_target(&self) -> PathBuf {
        self.root.join("target/cuda")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.cuda_target().join("release").join(name)
    }

    /// The packages of the CUDA build and their features: every cargo command of it names the same ones, so cargo
    /// unifies features alike and the benches reuse the build's dependencies.
    fn packages(&self) -> Vec<String> {
        let names: &[&str] = if self.candle { &["ort-cuda", "candle-cuda"] } else { &["ort-cuda"] };
        let features: Vec<String> =
            ["lsn-cli", "lsn-harness"].iter().flat_map(|p| names.iter().map(move |f| format!("{p}/{f}"))).collect();
        ["-p", "lsn-cli", "-p", "lsn-harness", "--features"]
            .map(String::from)
            .into_iter()
            .chain([features.join(",")])
            .collect()
    }

    /// A command in the GPU environment (see [`gpu_env`](Self::gpu_env)).
    fn on_gpu(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        self.gpu_env(&mut cmd);
        cmd
    }

    /// The CUDA venv's libraries on LD_LIBRARY_PATH and its ONNX Runtime in ORT_DYLIB_PATH, the model cache and data.
    fn gpu_env(&self, cmd: &mut Command) {
        cmd.env("LSN_HOME", home()).env("LSN_DATA_DIR", &self.data);
        if let Some(v) = &self.venv {
            cmd.env("LD_LIBRARY_PATH", prepend("LD_LIBRARY_PATH", &v.lib_dirs));
            cmd.env("ORT_DYLIB_PATH", &v.onnxruntime);
        }
    }

    /// cargo with the CUDA build's environment: LIBTORCH and ORT_DYLIB_PATH from the CUDA venv (the CPU runtimes in a
    /// dry run: same libtorch headers, same ONNX Runtime API), nvcc and the GPU's compute capability for candle.
    fn cargo_cuda(&self) -> Command {
        let mut cmd = cargo();
        if let Some(v) = &self.venv {
            cmd.env("LIBTORCH", &v.libtorch).env("ORT_DYLIB_PATH", &v.onnxruntime);
        }
        if let Some(links) = &self.link {
            cmd.env("LIBRARY_PATH", prepend("LIBRARY_PATH", std::slice::from_ref(links)));
        }
        if let Some((nvcc, _)) = &self.nvcc {
            let bin = nvcc.parent().unwrap_or(Path::new("/"));
            cmd.env("PATH", prepend("PATH", &[bin.to_owned()])).env("NVCC", nvcc);
            // The CUDA root above bin/, where the headers are (a toolkit, or the nvcc wheel's folder).
            if let Some(cuda_root) = bin.parent() {
                cmd.env("CUDA_ROOT", cuda_root).env("CUDA_PATH", cuda_root);
            }
            let cap = self.gpu.as_ref().map_or("90", |g| g.compute_cap.as_str());
            cmd.env("CUDA_COMPUTE_CAP", cap);
        }
        cmd
    }
}

/// The search path in variable `var`, with `dirs` first.
fn prepend(var: &str, dirs: &[PathBuf]) -> std::ffi::OsString {
    let mut all = dirs.to_vec();
    all.extend(std::env::var_os(var).map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default());
    std::env::join_paths(all).unwrap_or_default()
}

/// A command as one readable line: its variables (long values shortened), program and arguments.
fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            let v = v?.to_string_lossy().into_owned();
            let v = if v.len() > 100 { format!("{}…", &v[..v.floor_char_boundary(97)]) } else { v };
            Some(format!("{}={v}", k.to_string_lossy()))
        })
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.contains(' ') { format!("'{a}'") } else { a.into_owned() }
    }));
    parts.join(" ")
}

fn probe(c: &mut Check) -> Result<String> {
    c.gpu = gpu_info(&mut c.commands);
    c.nvcc = find_nvcc(&mut c.commands);
    let gpu = c.gpu.as_ref().map_or_else(
        || "none (nvidia-smi lists no GPU)".to_owned(),
        |g| format!("{}, driver {}, {}, compute capability {}", g.name, g.driver, g.memory, g.compute_cap),
    );
    let nvcc = c.nvcc.as_ref().map_or_else(|| "none".to_owned(), |(p, v)| format!("{} ({v})", p.display()));
    if c.gpu.is_none() && !c.dry && !c.setup_only {
        bail!(
            "no NVIDIA GPU here (nvidia-smi lists none): `cargo xtask gpu-check --dry-run` runs every step that needs \
             none and prints the commands of the rest"
        );
    }
    Ok(format!("GPU: {gpu}; nvcc: {nvcc}"))
}

/// The first GPU nvidia-smi lists, or None (no nvidia-smi, no driver, no GPU).
fn gpu_info(commands: &mut Vec<String>) -> Option<Gpu> {
    let mut cmd = Command::new("nvidia-smi");
    cmd.args(["--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"]);
    commands.push(show(&cmd));
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    parse_gpu(&String::from_utf8_lossy(&out.stdout))
}

fn parse_gpu(csv: &str) -> Option<Gpu> {
    let fields: Vec<&str> = csv.lines().next()?.split(',').map(str::trim).collect();
    let [name, driver, memory, cap] = fields.as_slice() else { return None };
    Some(Gpu {
        name: (*name).to_owned(),
        driver: (*driver).to_owned(),
        memory: (*memory).to_owned(),
        compute_cap: cap.replace('.', ""),
    })
}

/// nvcc: `NVCC`, `CUDA_HOME`/`CUDA_PATH`/`CUDA_ROOT`'s bin/, the PATH, /usr/local/cuda/bin; with its release line.
fn find_nvcc(commands: &mut Vec<String>) -> Option<(PathBuf, String)> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("NVCC").map(PathBuf::from).into_iter().collect();
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        candidates.extend(std::env::var_os(var).map(|d| PathBuf::from(d).join("bin/nvcc")));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/bin/nvcc"));
    candidates.into_iter().filter(|p| p.is_file()).find_map(|p| nvcc_version(&p, commands).map(|v| (p, v)))
}

/// `nvcc --version`'s release (`release 13.0, V13.0.88`), or None when it does not run.
fn nvcc_version(nvcc: &Path, commands: &mut Vec<String>) -> Option<String> {
    let mut cmd = Command::new(nvcc);
    cmd.arg("--version");
    commands.push(show(&cmd));
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.split_once("release ").map(|(_, r)| r.trim().to_owned()))
}

fn runtimes(c: &mut Check) -> Result<String> {
    c.commands.push("cargo xtask setup; lsn fetch-model gemma-3-270m smollm2-135m".into());
    let rt = crate::setup()?;
    crate::setup_models()?;
    Ok(format!("LIBTORCH={} ORT_DYLIB_PATH={}", rt.libtorch().display(), rt.onnxruntime().display()))
}

/// The CUDA venv's requirements: torch and onnxruntime-gpu at the CPU runtimes' pins, the HF side's pins from
/// xtask/fixtures/requirements.txt, and PyPI's nvcc when `nvcc` is set.
fn cuda_requirements(root: &Path, nvcc: bool) -> Result<Vec<String>> {
    let pin = |name: &str| {
        runtime::WHEELS
            .iter()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix("=="))
            .with_context(|| format!("runtime::WHEELS pins no {name}"))
    };
    // onnxruntime-gpu's extras name the CUDA libraries its provider loads (cuBLAS through cuDNN's); torch pins the
    // same CUDA 13 ones, so one venv resolves both.
    let mut reqs =
        vec![format!("torch=={}", pin("torch")?), format!("onnxruntime-gpu[cuda,cudnn]=={}", pin("onnxruntime")?)];
    let path = root.join("xtask/fixtures/requirements.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split(['=', '<', '>', '~', '[', ' ']).next().unwrap_or_default();
        if !NOT_FOR_GPU.contains(&name) {
            reqs.push(line.to_owned());
        }
    }
    if nvcc {
        reqs.extend(NVCC_WHEELS.iter().map(|w| (*w).to_owned()));
    }
    Ok(reqs)
}

fn cuda_venv(c: &mut Check) -> Result<String> {
    let want_nvcc = c.nvcc.is_none();
    let reqs = cuda_requirements(&c.root, want_nvcc)?;
    let dir = c.root.join(".venv-cuda");
    if c.dry {
        // Resolved against PyPI without installing: pip reads the wheels' metadata, not the wheels.
        let report = c.work.join("pip-dry-run.json");
        let py = c.root.join(".venv/bin/python");
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--disable-pip-version-check"])
            .arg("--report")
            .arg(&report)
            .args(&reqs);
        c.exec(&mut cmd)?;
        let v: Value = serde_json::from_slice(&std::fs::read(&report)?).context("pip's --report is not JSON")?;
        let installs = v["install"].as_array().map(Vec::as_slice).unwrap_or_default();
        let version = |name: &str| {
            installs
                .iter()
                .find(|i| i["metadata"]["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .and_then(|i| i["metadata"]["version"].as_str())
                .unwrap_or("?")
                .to_owned()
        };
        let nvidia =
            installs.iter().filter(|i| i["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("nvidia"))).count();
        return Ok(format!(
            "resolved, not installed: {} packages (torch {}, onnxruntime-gpu {}, transformers {}, peft {}, {nvidia} \
             nvidia-* CUDA libraries{})",
            installs.len(),
            version("torch"),
            version("onnxruntime-gpu"),
            version("transformers"),
            version("peft"),
            if want_nvcc { format!(", nvcc {}", version("nvidia-cuda-nvcc")) } else { String::new() }
        ));
    }
    c.commands.push(format!("{} -m venv {}; pip install {}", python(), dir.display(), reqs.join(" ")));
    let args: Vec<&str> = reqs.iter().map(String::as_str).collect();
    let py = venv::ensure_venv(&dir, &python(), &args, "lsn-gpu-check.txt", &reqs.join("\n"))?;
    let site = runtime::site_packages(&dir)?;
    let onnxruntime = std::fs::read_dir(site.join("onnxruntime/capi"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
        .context("onnxruntime-gpu installed no onnxruntime/capi/libonnxruntime.so.*")?;
    let nvidia = files_under(&site.join("nvidia"));
    // Every folder named lib/ that holds a shared library.
    let mut lib_dirs: Vec<PathBuf> = nvidia
        .iter()
        .filter(|f| in_folder(f, "lib") && f.file_name().is_some_and(|n| n.to_string_lossy().contains(".so")))
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    lib_dirs.dedup();
    if want_nvcc {
        let nvcc = nvidia
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == "nvcc") && in_folder(f, "bin"))
            .cloned()
            .context("nvidia-cuda-nvcc installed no bin/nvcc")?;
        let v = nvcc_version(&nvcc, &mut c.commands).context("PyPI's nvcc does not run")?;
        c.nvcc = Some((nvcc, format!("{v}, from PyPI")));
    }
    c.venv = Some(CudaVenv { python: py, libtorch: site.join("torch"), onnxruntime, lib_dirs });
    let v = c.venv.as_ref().expect("just set");
    Ok(format!(
        "{}: libtorch {}, {}; {} CUDA library folders",
        dir.display(),
        v.libtorch.display(),
        v.onnxruntime.display(),
        v.lib_dirs.len()
    ))
}

/// Every file under `dir`, at any depth (none when it cannot be read).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files.sort();
    files
}

/// Whether `path`'s folder is named `name`.
fn in_folder(path: &Path, name: &str) -> bool {
    path.parent().and_then(Path::file_name).is_some_and(|p| p == name)
}

fn build(c: &mut Check) -> Result<String> {
    // candle's CUDA build links the driver's libcuda: without a driver (a set-up checked on a CPU machine) it is
    // checked in a dry run but not built.
    let driver = driver_libcuda();
    c.candle = c.nvcc.is_some() && (c.dry || driver.is_some());
    let packages = c.packages();
    let features = packages.last().cloned().unwrap_or_default();
    if c.dry {
        // The tests' target dir: this machine's libtorch and build-script outputs are the tests' (torch-sys's C++ is
        // not compiled again unless candle's CUDA build dependencies change a shared one's features), and a check
        // writes no binary over theirs.
        let mut cmd = c.cargo_cuda();
        cmd.arg("check").args(&packages).args(["--bins", "--benches"]);
        c.exec(&mut cmd)?;
        return Ok(format!(
            "cargo check passed with {features}{}",
            if c.candle {
                ""
            } else {
                " (candle-cuda not checked: no nvcc here; on the GPU machine it is built with the toolkit's nvcc or PyPI's)"
            }
        ));
    }
    if c.candle {
        c.link = Some(link_folder(c)?);
    }
    let target = c.cuda_target();
    let mut cmd = c.cargo_cuda();
    cmd.args(["build", "--release", "--target-dir"]).arg(&target).args(&packages).arg("--bins");
    c.exec(&mut cmd)?;
    let mut cmd = c.cargo_cuda();
    cmd.args(["bench", "--no-run", "--target-dir"]).arg(&target).args(&packages).arg("--benches");
    c.exec(&mut cmd)?;
    c.built = true;
    Ok(format!(
        "{} and lsn-conformance, benches; features {features}{}",
        c.bin("lsn").display(),
        match (&c.nvcc, c.candle) {
            (None, _) => " (candle-cuda not built: no nvcc)",
            (Some(_), false) => " (candle-cuda not built: no driver libcuda.so.1 to link it against)",
            _ => "",
        }
    ))
}

/// A folder of unversioned links for candle's link step: [`LINK_NAMES`] to the CUDA venv's versioned libraries (the
/// toolkit's where the venv has none), and `libcuda.so` to the driver's `libcuda.so.1`.
fn link_folder(c: &Check) -> Result<PathBuf> {
    let dir = c.work.join("cuda-link");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut search: Vec<PathBuf> = c.venv.as_ref().map(|v| v.lib_dirs.clone()).unwrap_or_default();
    if let Some((nvcc, _)) = &c.nvcc
        && let Some(root) = nvcc.parent().and_then(Path::parent)
    {
        search.extend([root.join("lib64"), root.join("lib"), root.join("lib64/stubs")]);
    }
    for name in LINK_NAMES {
        let versioned = format!("{name}.");
        let target = search
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|es| es.filter_map(|e| e.ok().map(|e| e.path())))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n == *name || n.starts_with(&versioned)))
            .with_context(|| format!("no {name}* in the CUDA venv or toolkit ({} folders searched)", search.len()))?;
        std::os::unix::fs::symlink(&target, dir.join(name))?;
    }
    let driver = driver_libcuda().context(
        "the driver's libcuda.so.1 is not where the loader looks (ldconfig -p lists none): is the NVIDIA driver installed?",
    )?;
    std::os::unix::fs::symlink(driver, dir.join("libcuda.so"))?;
    Ok(dir)
}

/// The driver's libcuda.so.1, from the loader's cache or the usual folders.
fn driver_libcuda() -> Option<PathBuf> {
    let cached = Command::new("ldconfig").arg("-p").output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.trim_start().starts_with("libcuda.so.1 ") && l.contains("x86-64"))
            .and_then(|l| l.rsplit("=> ").next())
            .map(|p| PathBuf::from(p.trim()))
    });
    cached.or_else(|| {
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"]
            .iter()
            .map(|d| Path::new(d).join("libcuda.so.1"))
            .find(|p| p.is_file())
    })
}

fn conformance(c: &mut Check) -> Result<String> {
    let json_path = c.out.join("conformance-cuda.json");
    let _ = std::fs::remove_file(&json_path);
    let mut cmd = c.on_gpu(c.bin("lsn-conformance"));
    cmd.args(["--device", "cuda", "--json"]).arg(&json_path);
    // The suite exits non-zero when a case fails: its report still says which.
    let ran = c.exec(&mut cmd);
    if !c.live {
        return Ok(String::new());
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).with_context(|| {
        format!("the conformance suite wrote no {} ({:?})", json_path.display(), ran.as_ref().err())
    })?)?;
    let summary = conformance_summary(&report);
    c.results.insert("conformance", summary.clone());
    let failed: u64 = summary.as_array().into_iter().flatten().map(|b| b["failed"].as_u64().unwrap_or(0)).sum();
    ensure!(failed == 0, "{failed} conformance case(s) failed on cuda (see {})", json_path.display());
    ran?;
    Ok(summary
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| format!("{}: {} passed, {} skipped", b["backend"].as_str().unwrap_or("?"), b["passed"], b["skipped"]))
        .collect::<Vec<_>>()
        .join("; "))
}

/// Per backend of a conformance report: passed, failed, skipped, and the check closest to its tolerance.
fn conformance_summary(report: &Value) -> Value {
    let checks = report["checks"].as_array().map(Vec::as_slice).unwrap_or_default();
    let backends = report["backends"].as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        backends
            .iter()
            .filter_map(Value::as_str)
            .map(|b| {
                let mine: Vec<&Value> = checks.iter().filter(|c| c["backend"] == b).collect();
                let count = |o: &str| mine.iter().filter(|c| outcome(c).0 == o).count();
                let worst = mine
                    .iter()
                    .filter_map(|c| Some((c, c["worst"].as_f64()? / c["tolerance"].as_f64().filter(|t| *t > 0.0)?)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                json!({
                    "backend": b, "passed": count("pass"), "failed": count("fail"), "skipped": count("skip"),
                    "worst_case": worst.map(|(c, _)| c["case"].clone()),
                    "worst": worst.map(|(c, _)| c["worst"].clone()),
                    "measure": worst.map(|(c, _)| c["measure"].clone()),
                    "tolerance": worst.map(|(c, _)| c["tolerance"].clone()),
                    "of_tolerance": worst.map(|(_, r)| r),
                    "failures": mine.iter().filter(|c| outcome(c).0 == "fail")
                        .map(|c| format!("{}: {}", c["case"].as_str().unwrap_or("?"), outcome(c).1))
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// A check's outcome (`pass`, `fail`, `skip`, `reference`) and reason, as harness/src/report.rs serialises them
/// (`"outcome": {"outcome": "fail", "reason": "..."}`).
fn outcome(check: &Value) -> (&str, &str) {
    let o = &check["outcome"];
    (o["outcome"].as_str().unwrap_or_default(), o["reason"].as_str().unwrap_or_default())
}

/// A bench workload paired with the HF script line that times the same work.
struct Pair {
    /// The criterion group, and the function after `backend/`.
    group: &'static str,
    function: &'static str,
    /// The HF JSON line's fields that pick it, and its rate field.
    hf: &'static [(&'static str, &'static str)],
    field: &'static str,
    unit: &'static str,
}

const PAIRS: &[Pair] = &[
    Pair {
        group: "capture-gemma-3-270m-4x512",
        function: "pass1",
        hf: &[("taps", "pass1"), ("target", "body")],
        field: "tokens_per_s",
        unit: "tokens/s",
    },
    Pair {
        group: "generate-gemma-3-270m-4x200+32",
        function: "greedy-kv-cache",
        hf: &[("bench", "generate")],
        field: "new_tokens_per_s",
        unit: "new tokens/s",
    },
    Pair {
        group: "score-gemma-3-270m-4x512",
        function: "nll",
        hf: &[("bench", "score")],
        field: "tokens_per_s",
        unit: "tokens/s",
    },
    Pair {
        group: "xnli-gemma-3-270m-12x3",
        function: "zero-shot-batch8",
        hf: &[("bench", "xnli")],
        field: "examples_per_s",
        unit: "examples/s",
    },
    Pair {
        group: "xquad-gemma-3-270m-4x32",
        function: "greedy-batch4",
        hf: &[("bench", "xquad")],
        field: "examples_per_s",
        unit: "examples/s",
    },
    Pair {
        group: "train-gemma-3-270m-xnli16",
        function: "lora-r16-qkvo-gate-grad",
        hf: &[("bench", "train-xnli16")],
        field: "tokens_per_s",
        unit: "tokens/s",
    },
    Pair {
        group: "train-lm-gemma-3-270m-xnli16",
        function: "lora-r16-qkvo-gate-grad",
        hf: &[("bench", "train-lm-xnli16")],
        field: "tokens_per_s",
        unit: "tokens/s",
    },
];

fn bench(c: &mut Check) -> Result<String> {
    let criterion = c.work.join("criterion");
    if c.live && criterion.exists() {
        std::fs::remove_dir_all(&criterion)?;
    }
    let packages = c.packages();
    let target = c.cuda_target();
    // One process that fails (a backend's CUDA path, say) is recorded; the others still run and are reported.
    let mut failures = Vec::new();
    for (label, mut cmd) in bench_processes(|| {
        let mut cmd = c.cargo_cuda();
        c.gpu_env(&mut cmd);
        cmd.env("LSN_BENCH_DEVICE", "cuda")
            .env("CRITERION_HOME", &criterion)
            .args(["bench", "--target-dir"])
            .arg(&target)
            .args(&packages);
        cmd
    }) {
        cmd.args(["--warm-up-time", "1", "--measurement-time", "2", "--noplot"]);
        if let Err(e) = c.exec(&mut cmd) {
            failures.push(format!("{label}: {e:#}"));
        }
    }
    let py = c.venv.as_ref().map_or_else(|| c.root.join(".venv-cuda/bin/python"), |v| v.python.clone());
    let mut hf = Vec::new();
    for mut cmd in hf_bench_commands(|| {
        let mut cmd = c.on_gpu(&py);
        cmd.env("PYTHONUNBUFFERED", "1");
        cmd
    }) {
        cmd.args(["--device", "cuda"]);
        match c.exec_output(&mut cmd) {
            Ok(lines) => hf.extend(lines.iter().flatten().filter_map(|l| serde_json::from_str::<Value>(l).ok())),
            Err(e) => {
                failures.push(format!("HF {}: {e:#}", cmd.get_args().next().unwrap_or_default().to_string_lossy()))
            }
        }
    }
    if !c.live {
        return Ok(String::new());
    }
    let lsn = criterion_rates(&criterion)?;
    let rows = bench_rows(&lsn, &hf);
    let summary = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["workload"].as_str().unwrap_or("?"),
                r["best_vs_hf"].as_f64().map_or("—".into(), |x| format!("{x:.2}×"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    c.results.insert("bench", json!({"rows": rows, "lsn": lsn, "hf": hf, "failures": failures}));
    ensure!(failures.is_empty(), "{} of the bench processes failed: {}", failures.len(), failures.join("; "));
    Ok(format!("best lsn backend ÷ HF: {summary}"))
}

/// Every criterion result under `dir`: group, function and the median rate (throughput elements per second).
fn criterion_rates(dir: &Path) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    for p in files_under(dir).into_iter().filter(|p| p.ends_with("new/benchmark.json")) {
        let b: Value = serde_json::from_slice(&std::fs::read(&p)?).with_context(|| format!("{}", p.display()))?;
        let est_path = p.with_file_name("estimates.json");
        let e: Value =
            serde_json::from_slice(&std::fs::read(&est_path).with_context(|| format!("{}", est_path.display()))?)?;
        let (Some(elements), Some(ns)) = (b["throughput"]["Elements"].as_f64(), e["median"]["point_estimate"].as_f64())
        else {
            continue;
        };
        found.push(json!({"group": b["group_id"], "function": b["function_id"], "median_s": ns / 1e9,
            "rate": elements / (ns / 1e9)}));
    }
    found.sort_by_key(|v| (v["group"].to_string(), v["function"].to_string()));
    Ok(found)
}

/// One row per workload of [`PAIRS`]: each backend's rate, HF's, and the best backend's ratio to HF.
fn bench_rows(lsn: &[Value], hf: &[Value]) -> Vec<Value> {
    PAIRS
        .iter()
        .map(|p| {
            let mut row = json!({"workload": p.group, "unit": p.unit});
            let mut best: Option<f64> = None;
            for backend in BENCH_BACKENDS {
                let rate = lsn
                    .iter()
                    .find(|v| v["group"] == p.group && v["function"] == format!("{backend}/{}", p.function).as_str())
                    .and_then(|v| v["rate"].as_f64());
                row[*backend] = json!(rate);
                best = match (best, rate) {
                    (Some(b), Some(r)) => Some(b.max(r)),
                    (b, r) => b.or(r),
                };
            }
            let hf_rate =
                hf.iter().find(|v| p.hf.iter().all(|(k, want)| v[*k] == *want)).and_then(|v| v[p.field].as_f64());
            row["hf"] = json!(hf_rate);
            row["best_vs_hf"] = json!(best.zip(hf_rate).map(|(b, h)| b / h));
            row
        })
        .collect()
}

fn smoke(c: &mut Check) -> Result<String> {
    let out = c.work.join("smoke");
    if c.live && out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let mut cmd = c.on_gpu(c.bin("lsn"));
    cmd.args(["reproduce", "--scale", "smoke", "--device", "cuda", "--data-dir"]).arg(&c.data).arg("--out").arg(&out);
    let t = Instant::now();
    if !c.exec(&mut cmd)? {
        return Ok(String::new());
    }
    let secs = t.elapsed().as_secs_f64();
    ensure!(out.join("report.md").is_file(), "lsn reproduce wrote no {}", out.join("report.md").display());
    c.results.insert("smoke", json!({"secs": secs, "report": out.join("report.md")}));
    Ok(format!("{} in {secs:.0} s", out.join("report.md").display()))
}

fn big_capture(c: &mut Check) -> Result<String> {
    let model = c.work.join("llama-3.1-8b-bf16");
    let done = model.join("xtask-complete");
    if c.live && !done.is_file() && model.exists() {
        std::fs::remove_dir_all(&model)?;
    }
    let mut cmd = c.on_gpu(c.bin("lsn"));
    cmd.args(["random-model", "llama-3.1-8b", "--dtype", "bf16", "--seed", "1", "--out"]).arg(&model);
    if c.live && done.is_file() {
        c.commands.push(format!("{} (already written)", show(&cmd)));
    } else if c.exec(&mut cmd)? {
        std::fs::write(&done, "")?;
    }
    // ort holds f32 weights only.
    let backends: Vec<&str> = ["tch", "candle"].into_iter().filter(|b| *b != "candle" || c.candle).collect();
    let mut rows = Vec::new();
    for backend in backends {
        let run = c.work.join(format!("run-8b-{backend}"));
        if c.live && run.exists() {
            std::fs::remove_dir_all(&run)?;
        }
        let mut cmd = c.on_gpu(c.bin("lsn"));
        cmd.args(["capture", "--model"]).arg(&model).args([
            "--lang",
            "en",
            "--max-tokens",
            BIG_TOKENS,
            "--row-len",
            "512",
            "--batch-rows",
            "4",
            "--dtype",
            "bf16",
            "--device",
            "cuda",
            "--backend",
            backend,
            "--data-dir",
        ]);
        cmd.arg(&c.data).arg("--run").arg(&run);
        let poll = c.live.then(GpuMemoryPoll::start);
        let stdout = c.exec_output(&mut cmd);
        let peak = poll.and_then(|p| p.stop());
        let lines = match stdout {
            Ok(Some(lines)) => lines,
            Ok(None) => continue,
            Err(e) => {
                rows.push(json!({"backend": backend, "error": format!("{e:#}"), "peak_gpu_mib": peak}));
                continue;
            }
        };
        let rate = lines.iter().find_map(|l| {
            let before = l.split(" tokens/s").next().filter(|_| l.contains(" tokens/s"))?;
            before.rsplit(", ").next()?.trim().parse::<f64>().ok()
        });
        rows.push(json!({"backend": backend, "tokens_per_s": rate, "peak_gpu_mib": peak}));
    }
    if !c.live {
        return Ok(String::new());
    }
    let weights_mib = dir_size(&model) as f64 / 1048576.0;
    let summary = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {} tokens/s, peak {} MiB",
                r["backend"].as_str().unwrap_or("?"),
                r["tokens_per_s"],
                r["peak_gpu_mib"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let failed: Vec<String> =
        rows.iter().filter_map(|r| Some(format!("{}: {}", r["backend"].as_str()?, r["error"].as_str()?))).collect();
    c.results.insert("bf16-8b", json!({"rows": rows, "weights_mib": weights_mib}));
    ensure!(failed.is_empty(), "the bf16 capture failed on {}", failed.join("; "));
    Ok(summary)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| es.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// The GPU's memory in use, read by `nvidia-smi -lms 100` while a command runs; its peak in MiB.
struct GpuMemoryPoll {
    child: std::process::Child,
    peak: Arc<Mutex<Option<f64>>>,
    reader: std::thread::JoinHandle<()>,
}

impl GpuMemoryPoll {
    fn start() -> Self {
        let peak = Arc::new(Mutex::new(None));
        let mut child = Command::new("nvidia-smi")
            .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| Command::new("true").stdout(Stdio::piped()).spawn().expect("true runs"));
        let out = child.stdout.take().expect("piped stdout");
        let p = Arc::clone(&peak);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mib) = line.trim().parse::<f64>() {
                    let mut g = p.lock().expect("poll lock");
                    *g = Some(g.map_or(mib, |m: f64| m.max(mib)));
                }
            }
        });
        Self { child, peak, reader }
    }

    fn stop(mut self) -> Option<f64> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        *self.peak.lock().expect("poll lock")
    }
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Ran => "ran".into(),
        Status::Planned => "planned (needs a GPU)".into(),
        Status::Failed(why) => format!("**failed**: {}", why.lines().next().unwrap_or_default()),
        Status::Skipped(why) => format!("skipped: {why}"),
    }
}

fn fmt_rate(v: &Value) -> String {
    v.as_f64().map_or_else(|| "—".into(), |x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.2}") })
}

/// The table: steps, then what each GPU step measured; in a dry run, the commands the GPU steps would run.
fn render(c: &Check, records: &[Record], total: f64) -> String {
    let mut s = String::new();
    let gpu = c
        .gpu
        .as_ref()
        .map_or_else(|| "no GPU".to_owned(), |g| format!("{} (driver {}, {})", g.name, g.driver, g.memory));
    s.push_str(&format!(
        "# lsn gpu-check{}: {gpu}\n\nnvcc: {}. Total wall time {:.0} s.\n\n| step | what | status | seconds | result |\n|---|---|---|---:|---|\n",
        if c.dry { " --dry-run" } else { "" },
        c.nvcc.as_ref().map_or_else(|| "none".to_owned(), |(p, v)| format!("{} ({v})", p.display())),
        total
    ));
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} |\n",
            r.id,
            r.what,
            status_text(&r.status),
            r.secs,
            r.summary.replace('|', "\\|")
        ));
    }
    if let Some(conf) = c.results.get("conformance").and_then(Value::as_array) {
        s.push_str("\n## Conformance on cuda, per backend (the same HF goldens and tolerances as on the CPU)\n\n| backend | passed | failed | skipped | closest to its tolerance |\n|---|---:|---:|---:|---|\n");
        for b in conf {
            let worst = match (b["worst"].as_f64(), b["tolerance"].as_f64()) {
                (Some(w), Some(t)) => format!(
                    "{}: {} {w:.2e} of {t:.1e}",
                    b["worst_case"].as_str().unwrap_or("?"),
                    b["measure"].as_str().unwrap_or("")
                ),
                _ => "—".into(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {worst} |\n",
                b["backend"].as_str().unwrap_or("?"),
                b["passed"],
                b["failed"],
                b["skipped"]
            ));
        }
    }
    if let Some(rows) = c.results.get("bench").and_then(|b| b["rows"].as_array()) {
        s.push_str("\n## Benches on cuda against HF transformers / PEFT, same GPU, same run\n\n| workload | unit | candle | tch | ort | HF | best ÷ HF |\n|---|---|---:|---:|---:|---:|---:|\n");
        for r in rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r["workload"].as_str().unwrap_or("?"),
                r["unit"].as_str().unwrap_or("?"),
                fmt_rate(&r["candle"]),
                fmt_rate(&r["tch"]),
                fmt_rate(&r["ort"]),
                fmt_rate(&r["hf"]),
                r["best_vs_hf"].as_f64().map_or("—".into(), |x| format!("{x:.2}×"))
            ));
        }
    }
    if let Some(big) = c.results.get("bf16-8b") {
        let weights = big["weights_mib"].as_f64().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "\n## bf16 capture of the 8B-shaped random model ({weights:.0} MiB of weights; {BIG_TOKENS} tokens, rows of 512, 4 a batch, both passes)\n\n| backend | tokens/s | peak GPU memory, MiB | × weights |\n|---|---:|---:|---:|\n"
        ));
        for r in big["rows"].as_array().into_iter().flatten() {
            let peak = r["peak_gpu_mib"].as_f64();
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r["backend"].as_str().unwrap_or("?"),
                fmt_rate(&r["tokens_per_s"]),
                peak.map_or("—".into(), |p| format!("{p:.0}")),
                peak.map_or("—".into(), |p| format!("{:.2}", p / weights))
            ));
        }
    }
    if c.dry {
        s.push_str("\n## What the GPU steps will run\n");
        for r in records.iter().filter(|r| r.status == Status::Planned) {
            s.push_str(&format!("\n{}:\n", r.id));
            for cmd in &r.commands {
                s.push_str(&format!("    {cmd}\n"));
            }
        }
    }
    s
}

/// gpu-check.md, gpu-check.json and the per-step JSON, each written whole (temp file, then rename).
fn write_outputs(c: &Check, records: &[Record], table: &str, total: f64) -> Result<()> {
    let steps: Vec<Value> = records
        .iter()
        .map(|r| {
            let (status, reason) = match &r.status {
                Status::Ran => ("ran", None),
                Status::Planned => ("planned", None),
                Status::Failed(w) => ("failed", Some(w.clone())),
                Status::Skipped(w) => ("skipped", Some(w.clone())),
            };
            json!({"step": r.id, "status": status, "reason": reason, "secs": r.secs, "result": r.summary, "commands": r.commands})
        })
        .collect();
    let summary = json!({
        "dry_run": c.dry,
        "gpu": c.gpu.as_ref().map(|g| json!({"name": g.name, "driver": g.driver, "memory": g.memory, "compute_cap": g.compute_cap})),
        "nvcc": c.nvcc.as_ref().map(|(p, v)| json!({"path": p, "release": v})),
        "total_secs": total,
        "steps": steps,
        "results": c.results,
    });
    write_atomic(&c.out.join("gpu-check.md"), table.as_bytes())?;
    write_atomic(&c.out.join("gpu-check.json"), &serde_json::to_vec_pretty(&summary)?)?;
    if let Some(b) = c.results.get("bench") {
        write_atomic(&c.out.join("bench-cuda.json"), &serde_json::to_vec_pretty(b)?)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    lsn_core::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_lines() {
        let g = parse_gpu("NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB, 9.0\n").unwrap();
        assert_eq!(
            (g.name.as_str(), g.driver.as_str(), g.memory.as_str(), g.compute_cap.as_str()),
            ("NVIDIA H100 80GB HBM3", "580.159.04", "81559 MiB", "90")
        );
        assert!(parse_gpu("").is_none());
        assert!(parse_gpu("No devices were found").is_none());
    }

    #[test]
    fn the_cuda_venv_takes_the_runtime_pins_and_the_hf_side_without_its_cpu_builds() {
        let reqs = cuda_requirements(&root(), true).unwrap();
        let torch = runtime::WHEELS.iter().find(|w| w.starts_with("torch==")).unwrap();
        assert!(reqs.contains(&(*torch).to_owned()), "{reqs:?}");
        assert!(reqs.iter().any(|r| r.starts_with("onnxruntime-gpu[cuda,cudnn]==")), "{reqs:?}");
        assert!(reqs.iter().any(|r| r.starts_with("peft==")) && reqs.iter().any(|r| r.starts_with("transformers==")));
        assert!(!reqs.iter().any(|r| r.starts_with("onnxruntime==") || r.starts_with("gguf")), "{reqs:?}");
        assert_eq!(reqs.iter().filter(|r| r.starts_with("torch==")).count(), 1, "{reqs:?}");
        assert!(NVCC_WHEELS.iter().all(|w| reqs.contains(&(*w).to_owned())), "{reqs:?}");
        assert!(!cuda_requirements(&root(), false).unwrap().iter().any(|r| r.starts_with("nvidia-cuda-nvcc")));
    }

    #[test]
    fn criterion_results_become_rates_paired_with_hf() {
        let t = std::env::temp_dir().join(format!("lsn-gpu-check-test-{}", std::process::id()));
        let d = t.join("capture-gemma-3-270m-4x512/tch_pass1/new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("benchmark.json"),
            r#"{"group_id":"capture-gemma-3-270m-4x512","function_id":"tch/pass1","throughput":{"Elements":2048}}"#,
        )
        .unwrap();
        std::fs::write(d.join("estimates.json"), r#"{"median":{"point_estimate":5.0e8}}"#).unwrap();
        let lsn = criterion_rates(&t).unwrap();
        std::fs::remove_dir_all(&t).unwrap();
        assert_eq!(lsn.len(), 1);
        assert_eq!(lsn[0]["rate"].as_f64(), Some(4096.0));
        let hf = vec![
            json!({"impl": "hf-transformers", "taps": "pass1", "target": "full-with-logits", "tokens_per_s": 100.0}),
            json!({"impl": "hf-transformers", "taps": "pass1", "target": "body", "tokens_per_s": 1024.0}),
        ];
        let rows = bench_rows(&lsn, &hf);
        assert_eq!(rows.len(), PAIRS.len());
        assert_eq!(rows[0]["tch"].as_f64(), Some(4096.0));
        assert_eq!(rows[0]["hf"].as_f64(), Some(1024.0));
        assert_eq!(rows[0]["best_vs_hf"].as_f64(), Some(4.0));
        assert!(rows[0]["candle"].is_null() && rows[1]["best_vs_hf"].is_null());
    }

    #[test]
    fn conformance_reports_sum_up_per_backend_with_the_check_closest_to_its_tolerance() {
        let report = json!({"backends": ["candle", "tch"], "checks": [
            {"case": "forward/tiny-llama", "backend": "candle", "outcome": {"outcome": "pass"}, "worst": 1e-5, "tolerance": 1e-4, "measure": "max |Δlogit|"},
            {"case": "forward/gemma", "backend": "candle", "outcome": {"outcome": "pass"}, "worst": 5e-5, "tolerance": 1e-4, "measure": "max |Δlogit|"},
            {"case": "lora/tiny", "backend": "candle", "outcome": {"outcome": "fail", "reason": "max |Δgrad| = 1e-2 > 1e-3"}, "worst": 1e-2, "tolerance": 1e-3, "measure": "max |Δgrad|"},
            {"case": "forward/gemma", "backend": "tch", "outcome": {"outcome": "skip", "reason": "no CUDA"}, "worst": null, "tolerance": null, "measure": ""},
        ]});
        let s = conformance_summary(&report);
        assert_eq!(s[0]["passed"], 2);
        assert_eq!(s[0]["failed"], 1);
        assert_eq!(s[0]["worst_case"], "lora/tiny");
        assert_eq!(s[0]["failures"][0], "lora/tiny: max |Δgrad| = 1e-2 > 1e-3");
        assert_eq!((s[1]["passed"].as_u64(), s[1]["skipped"].as_u64()), (Some(0), Some(1)));
        assert!(s[1]["worst_case"].is_null());
    }

    #[test]
    fn commands_are_shown_on_one_line_with_long_values_cut() {
        let mut cmd = Command::new("lsn");
        cmd.env("LD_LIBRARY_PATH", "x".repeat(300)).args(["capture", "--lang", "two words"]);
        let line = show(&cmd);
        assert!(line.starts_with("LD_LIBRARY_PATH=xxx") && line.contains("…"), "{line}");
        assert!(line.ends_with("lsn capture --lang 'two words'"), "{line}");
    }
}
