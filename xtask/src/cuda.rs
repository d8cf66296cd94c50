//! `cargo xtask check-cuda` and `cargo xtask gpu-check --build`: the `cuda` feature built on a
//! machine without a GPU, and the bundle carried to one that has a GPU.
//!
//! The CUDA toolkit comes from (first match):
//! 1. `CUDA_HOME` (or `CUDA_PATH`) with `bin/nvcc` in it: a system toolkit, used as it is;
//! 2. `nvcc` on `PATH`: its parent folder is the toolkit;
//! 3. a Python virtual environment holding the NVIDIA wheels pinned in
//!    `gpu-check/requirements-cuda-toolkit.txt` (`--venv`, `RTB_CUDA_VENV`, default
//!    `target/cuda-toolkit`; `--install` creates it with pip).
//!
//! The wheels give nvcc, the headers and the versioned libraries (`libcublas.so.13`) but not
//! the unversioned names the linker asks for, nor `libcuda.so` (the driver's library, which
//! only a GPU machine has). For that layout a link folder is made beside the wheels: symbolic
//! links under the unversioned names and a stub `libcuda.so` (soname `libcuda.so.1`, every
//! driver function cudarc declares answering `CUDA_ERROR_NO_DEVICE`), as the toolkit's own
//! `lib64/stubs` does. The stub is never carried: on a GPU machine the real driver library is
//! found by its soname.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::process::{cargo, exec};

/// The requirements file of the wheel toolkit, relative to the repository root.
const REQUIREMENTS: &str = "gpu-check/requirements-cuda-toolkit.txt";

/// The libraries candle's cudarc links (its `dynamic-linking` feature), by unversioned name
/// and the versioned file the CUDA 13 wheels ship.
const WHEEL_LIBRARIES: [(&str, &str); 5] = [
    ("libcublas.so", "libcublas.so.13"),
    ("libcublasLt.so", "libcublasLt.so.13"),
    ("libcurand.so", "libcurand.so.10"),
    ("libnvrtc.so", "libnvrtc.so.13"),
    ("libcudart.so", "libcudart.so.13"),
];

/// CUDA_ERROR_NO_DEVICE: what every stub driver function answers.
const NO_DEVICE: i32 = 100;

/// Where the toolkit comes from and how to build with it.
#[derive(Debug, clap::Args)]
pub struct ToolkitArgs {
    /// The virtual environment with the NVIDIA wheels (default: $RTB_CUDA_VENV, else
    /// target/cuda-toolkit).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Create the virtual environment and install the pinned wheels when no toolkit is found.
    #[arg(long)]
    pub install: bool,
    /// The compute capability the PTX kernels are built for (90: H100 and H200).
    #[arg(long, default_value = "90")]
    pub compute_cap: String,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub toolkit: ToolkitArgs,
    /// Build `rtb` in release (compiles and links) instead of only type-checking the feature.
    #[arg(long)]
    pub build: bool,
}

#[derive(Debug, clap::Args)]
pub struct GpuCheckArgs {
    #[command(flatten)]
    pub toolkit: ToolkitArgs,
    /// Build the carried bundle: release `rtb` with `cuda`, stripped, into gpu-check/bin/.
    #[arg(long)]
    pub build: bool,
}

/// A CUDA toolkit found on this machine, and the environment a cargo build needs to use it.
#[derive(Debug)]
struct Toolkit {
    /// The folder with `bin/nvcc` and `include/`.
    root: PathBuf,
    /// Extra link folder (the wheel layout's unversioned links and driver stub).
    link_dir: Option<PathBuf>,
}

impl Toolkit {
    fn nvcc(&self) -> PathBuf {
        self.root.join("bin").join("nvcc")
    }

    /// The environment of a cargo command that builds candle's CUDA backend.
    fn apply(&self, command: &mut Command, compute_cap: &str) {
        let mut path = OsString::from(self.root.join("bin"));
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        command.env("PATH", path);
        command.env("CUDA_COMPUTE_CAP", compute_cap);
        // cudarc searches only the folders these variables name once one is set.
        let home = self.link_dir.as_deref().unwrap_or(&self.root);
        command.env("CUDA_HOME", home);
        command.env("CUDA_PATH", home);
        command.env("CUDA_ROOT", home);
        if self.link_dir.is_some() {
            command.env("NVCC", self.nvcc());
        }
    }
}

fn venv_dir(args: &ToolkitArgs) -> PathBuf {
    args.venv
        .clone()
        .or_else(|| std::env::var_os("RTB_CUDA_VENV").map(PathBuf::from))
        .unwrap_or_else(|| crate::project_root().join("target").join("cuda-toolkit"))
}

/// The `nvidia/cu13` folder of a venv with the wheels, if any.
fn wheel_root(venv: &Path) -> Option<PathBuf> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    for entry in lib.flatten() {
        let candidate = entry.path().join("site-packages/nvidia/cu13");
        if candidate.join("bin").join("nvcc").is_file() {
            return Some(candidate);
        }
    }
    None
}

fn find_toolkit(args: &ToolkitArgs) -> anyhow::Result<Toolkit> {
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let root = PathBuf::from(home);
            if root.join("bin").join("nvcc").is_file() {
                eprintln!("CUDA toolkit from ${var}: {}", root.display());
                return Ok(Toolkit {
                    root,
                    link_dir: None,
                });
            }
        }
    }
    if let Some(nvcc) = find_on_path("nvcc")
        && let Some(root) = nvcc.parent().and_then(Path::parent)
    {
        eprintln!("CUDA toolkit from nvcc on PATH: {}", root.display());
        return Ok(Toolkit {
            root: root.to_path_buf(),
            link_dir: None,
        });
    }
    let venv = venv_dir(args);
    if wheel_root(&venv).is_none() {
        if !args.install {
            bail!(
                "no CUDA toolkit: set CUDA_HOME to one with bin/nvcc, put nvcc on PATH, or \
                 install the pinned wheels into {} with `cargo xtask check-cuda --install` \
                 (or point --venv / RTB_CUDA_VENV at such a virtual environment)",
                venv.display()
            );
        }
        install_wheels(&venv)?;
    }
    let root = wheel_root(&venv).with_context(|| {
        format!(
            "{} has no lib/python*/site-packages/nvidia/cu13/bin/nvcc after installing {REQUIREMENTS}",
            venv.display()
        )
    })?;
    eprintln!("CUDA toolkit from the wheels in {}", venv.display());
    let link_dir = prepare_wheel_links(&root, &venv.join("rtb-cuda-link"))?;
    Ok(Toolkit {
        root,
        link_dir: Some(link_dir),
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn install_wheels(venv: &Path) -> anyhow::Result<()> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    exec(Command::new(python).args(["-m", "venv"]).arg(venv))?;
    exec(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "-r"])
            .arg(crate::project_root().join(REQUIREMENTS)),
    )
}

/// Makes `<dest>/lib64` with the unversioned library links and the driver stub; returns
/// `<dest>` (a toolkit root for cudarc's link search: `bin` and `include` link to the wheels).
fn prepare_wheel_links(wheel_root: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    let lib64 = dest.join("lib64");
    fs::create_dir_all(&lib64).with_context(|| format!("cannot create {}", lib64.display()))?;
    for sub in ["bin", "include", "nvvm"] {
        relink(&wheel_root.join(sub), &dest.join(sub))?;
    }
    for (plain, versioned) in WHEEL_LIBRARIES {
        let target = wheel_root.join("lib").join(versioned);
        if !target.is_file() {
            bail!(
                "{} is missing: is every wheel of {REQUIREMENTS} installed?",
                target.display()
            );
        }
        relink(&target, &lib64.join(plain))?;
    }
    let stub = lib64.join("libcuda.so");
    if !stub.is_file() {
        build_driver_stub(&stub)?;
    }
    // The soname too, so that a CUDA build can run here (on the CPU) with this folder on
    // LD_LIBRARY_PATH: its CUDA calls then fail cleanly with "no device".
    relink(&stub, &lib64.join("libcuda.so.1"))?;
    Ok(dest.to_path_buf())
}

fn relink(target: &Path, link: &Path) -> anyhow::Result<()> {
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("cannot replace {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

/// The driver functions cudarc may call, read from its bindings (the version this workspace
/// locks), compiled into a shared library with the driver's soname.
fn build_driver_stub(out: &Path) -> anyhow::Result<()> {
    let bindings = cudarc_driver_bindings()?;
    let text = fs::read_to_string(&bindings)
        .with_context(|| format!("cannot read {}", bindings.display()))?;
    let names = driver_function_names(&text);
    if names.is_empty() {
        bail!("no driver functions found in {}", bindings.display());
    }
    let source = out.with_extension("c");
    let mut c = String::from("/* Link-time stub of libcuda.so.1, generated by cargo xtask. */\n");
    for name in &names {
        c.push_str(&format!("int {name}(void) {{ return {NO_DEVICE}; }}\n"));
    }
    fs::write(&source, c).with_context(|| format!("cannot write {}", source.display()))?;
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    exec(
        Command::new(cc)
            .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(out)
            .arg(&source),
    )
}

/// Every `fn cuXxx(` in cudarc's driver bindings (the `extern "C"` declarations and their
/// wrappers share names).
fn driver_function_names(bindings: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (idx, _) in bindings.match_indices("fn cu") {
        let rest = &bindings[idx + 3..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('(') {
            names.insert(rest[..end].to_string());
        }
    }
    names
}

fn cudarc_driver_bindings() -> anyhow::Result<PathBuf> {
    let output = cargo()
        .current_dir(crate::project_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--features",
            "rtb-cli/cuda",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "cudarc")
        .and_then(|package| package["manifest_path"].as_str())
        .context("cargo metadata lists no cudarc package (is candle's cuda feature wired?)")?;
    let dir = Path::new(manifest)
        .parent()
        .context("cudarc's manifest has no folder")?;
    Ok(dir.join("src/driver/sys/mod.rs"))
}

/// The CUDA build's own target folder: the feature changes candle's build, so sharing the CPU
/// build's folder would rebuild candle on every switch. `RTB_CUDA_TARGET_DIR`, else `cuda/`
/// inside the usual target folder.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RTB_CUDA_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"))
        .join("cuda")
}

fn print_nvcc_version(toolkit: &Toolkit) -> anyhow::Result<()> {
    exec(Command::new(toolkit.nvcc()).arg("--version"))
}

pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let toolkit = find_toolkit(&args.toolkit)?;
    print_nvcc_version(&toolkit)?;
    let mut command = cargo();
    command
        .current_dir(crate::project_root())
        .env("CARGO_TARGET_DIR", target_dir());
    toolkit.apply(&mut command, &args.toolkit.compute_cap);
    if args.build {
        command.args([
            "build",
            "--release",
            "--locked",
            "-p",
            "rtb-cli",
            "--features",
            "cuda",
        ]);
    } else {
        command.args([
            "check",
            "--locked",
            "-p",
            "rtb-cli",
            "--all-targets",
            "--features",
            "cuda",
        ]);
    }
    exec(&mut command)?;
    eprintln!("== the cuda feature builds");
    Ok(())
}

/// The bundle's size limit: what travels to the GPU machine is at most 64 MiB, the repository
/// included.
const BUNDLE_LIMIT: u64 = 48 << 20;

pub fn gpu_check(args: &GpuCheckArgs) -> anyhow::Result<()> {
    if !args.build {
        bail!(
            "nothing to do: `cargo xtask gpu-check --build` builds gpu-check/bin/; on the GPU \
             machine run `bash gpu-check/run.sh` (see gpu-check/README.md)"
        );
    }
    check(&CheckArgs {
        toolkit: ToolkitArgs {
            venv: args.toolkit.venv.clone(),
            install: args.toolkit.install,
            compute_cap: args.toolkit.compute_cap.clone(),
        },
        build: true,
    })?;
    let built = target_dir().join("release").join("rtb");
    let bin_dir = crate::project_root().join("gpu-check").join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("cannot create {}", bin_dir.display()))?;
    let carried = bin_dir.join("rtb");
    fs::copy(&built, &carried)
        .with_context(|| format!("cannot copy {} to {}", built.display(), carried.display()))?;
    exec(Command::new("strip").arg(&carried))?;
    let size = fs::metadata(&carried)
        .with_context(|| format!("cannot stat {}", carried.display()))?
        .len();
    eprintln!(
        "{}: {:.1} MiB stripped",
        carried.display(),
        size as f64 / f64::from(1 << 20)
    );
    if size > BUNDLE_LIMIT {
        bail!(
            "{} is {size} bytes, over the bundle's {BUNDLE_LIMIT}",
            carried.display()
        );
    }
    let ldd = Command::new("ldd")
        .arg(&carried)
        .output()
        .context("cannot run ldd")?;
    let ldd_text = String::from_utf8_lossy(&ldd.stdout).into_owned();
    fs::write(bin_dir.join("ldd.txt"), &ldd_text)
        .with_context(|| format!("cannot write {}", bin_dir.join("ldd.txt").display()))?;
    eprintln!("linked libraries (ldd here; libcuda.so.1 is the GPU machine's driver):\n{ldd_text}");
    eprintln!(
        "== bundle ready: carry gpu-check/bin and run `bash gpu-check/run.sh` on the GPU machine"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_are_read_from_declarations_and_wrappers() {
        let text = "pub unsafe fn cuInit(Flags: u32) -> CUresult {\n extern \"C\" { fn cuInit(Flags: u32) -> CUresult; }\n}\n\
                    pub unsafe fn cuMemAlloc_v2(p: *mut u64, n: usize) -> CUresult { body }\n\
                    fn cudaNot_a_driver_fn_without_paren;\n";
        let names = driver_function_names(text);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["cuInit".to_string(), "cuMemAlloc_v2".to_string()]
        );
    }
}
