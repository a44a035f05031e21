//! The short fuzz run: every seed and regression input through its entry
//! point, then a seeded, deterministic mutation loop per target.
//!
//! `KAJI_FUZZ_ITERATIONS` sets the mutations per target (default
//! [`DEFAULT_ITERATIONS`]); the long runs are `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

/// Mutated inputs per target when `KAJI_FUZZ_ITERATIONS` is unset.
const DEFAULT_ITERATIONS: usize = 400;

/// Fragments worth inserting: syntax of every format, directives, escapes,
/// numbers at the edges of their types.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"=",
    b"!",
    b"\\",
    b"%",
    b"%zz",
    b"%00",
    b"\0",
    b"\n",
    b"\n\n",
    b"---\n",
    b"- ",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"~",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"0.000000001",
    b"1e-2147483648",
    b"9Ei",
    b"\\ud800",
    b"\xff\xfe",
    b"\xf0\x9f\x92\xa9",
    b"$patch",
    b"\"$patch\":\"delete\"",
    b"\"$retainKeys\":[]",
    b"$setElementOrder/",
    b"$deleteFromPrimitiveList/",
    b"~0",
    b"~1",
    b"/-",
    b"\"op\":\"copy\",\"from\":\"\",\"path\":\"/a\"",
    b" in (",
    b" notin (",
    b")",
    b"==",
    b"!=",
    b"?watch=true&",
    b"&limit=-1",
    b"&continue=",
    b"&resourceVersion=",
    b"/namespaces/",
    b"/status",
    b"/scale",
    b"Content-Type: application/yaml\n",
    b"Content-Type: application/apply-patch+yaml\n",
    b"Content-Type: application/json-patch+json\n",
    b"Accept: application/json;as=Table;v=v1;g=meta.k8s.io\n",
    b"managedFields",
    b"f:",
    b"k:{",
];

/// A small, fast, seeded generator (xorshift64*): the same seed gives the
/// same inputs on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One random edit of `input`, sometimes splicing in part of `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let at = rng.below(out.len() + 1);
    match rng.below(10) {
        0 if !out.is_empty() => {
            let i = rng.below(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        1 => out.insert(at, rng.next() as u8),
        2 if !out.is_empty() => {
            let end = (at + 1 + rng.below(16)).min(out.len());
            out.drain(at.min(out.len() - 1)..end);
        }
        3 => {
            let cut = rng.below(other.len() + 1);
            out.truncate(at);
            out.extend_from_slice(&other[cut..]);
        }
        4 | 5 => {
            let piece = INTERESTING[rng.below(INTERESTING.len())];
            out.splice(at..at, piece.iter().copied());
        }
        6 if !out.is_empty() => {
            let i = rng.below(out.len());
            let piece = INTERESTING[rng.below(INTERESTING.len())];
            let end = (i + piece.len()).min(out.len());
            out.splice(i..end, piece.iter().copied());
        }
        7 if !out.is_empty() => {
            let start = rng.below(out.len());
            let end = (start + 1 + rng.below(64)).min(out.len());
            let chunk = out[start..end].to_vec();
            out.splice(at..at, chunk);
        }
        8 => {
            let digits = rng.next().to_string();
            out.splice(at..at, digits.bytes());
        }
        _ => {
            let i = rng.below(out.len() + 1);
            let n = rng.below(out.len() - i + 1);
            out.drain(i..i + n);
        }
    }
    out
}

/// Hostile inputs every target gets: deep nesting in each syntax and very
/// long tokens.
fn hostile() -> Vec<Vec<u8>> {
    let deep = |open: &str, n: usize| open.repeat(n).into_bytes();
    let mut yaml_indent = Vec::new();
    for i in 0..2_000 {
        yaml_indent.extend_from_slice(" ".repeat(i).as_bytes());
        yaml_indent.extend_from_slice(b"a:\n");
    }
    vec![
        deep("[", 10_000),
        deep("{\"a\":", 10_000),
        deep("- ", 10_000),
        deep("{a: ", 10_000),
        yaml_indent,
        [b"\0".as_slice(), &deep("[", 10_000)].concat(),
        [b"{}\0".as_slice(), &deep("{\"a\":", 10_000)].concat(),
        [b"\0{\"spec\":".as_slice(), &deep("[", 10_000)].concat(),
        "a".repeat(200_000).into_bytes(),
        "9".repeat(100_000).into_bytes(),
        [
            b"POST /api/v1/namespaces/default/configmaps\nContent-Type: application/json\n\n"
                .as_slice(),
            &deep("[", 10_000),
        ]
        .concat(),
        [
            b"GET /api/v1/pods?labelSelector=".as_slice(),
            "a".repeat(100_000).as_bytes(),
        ]
        .concat(),
        format!("GET /{}", "a/".repeat(20_000)).into_bytes(),
        format!("x in ({})", "a,".repeat(20_000)).into_bytes(),
        "a=b,".repeat(20_000).into_bytes(),
    ]
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).expect("seed files are readable");
            (p, data)
        })
        .collect();
    out.sort();
    out
}

fn target(name: &str) -> kaji_fuzz::Target {
    kaji_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Seeds and regressions, then the hostile inputs, then mutations.
fn run(name: &str) {
    let run = target(name);
    let seeds = files(&fuzz_dir().join("corpus").join(name));
    assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
    let regressions = files(&fuzz_dir().join("regressions").join(name));
    for (path, data) in seeds.iter().chain(&regressions) {
        eprintln!("{name}: replaying {}", path.display());
        run(data);
    }
    for data in hostile() {
        run(&data);
    }
    let iterations = std::env::var("KAJI_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    let inputs: Vec<&[u8]> = seeds.iter().map(|(_, d)| d.as_slice()).collect();
    let mut rng = Rng(0x6b61_6a69 ^ name.len() as u64 ^ (name.as_bytes()[0] as u64) << 32);
    for i in 0..iterations {
        let base = inputs[rng.below(inputs.len())];
        let other = inputs[rng.below(inputs.len())];
        let mut data = mutate(&mut rng, base, other);
        for _ in 0..rng.below(4) {
            data = mutate(&mut rng, &data, other);
        }
        let caught = std::panic::catch_unwind(|| run(&data));
        if caught.is_err() {
            panic!(
                "{name}: mutation {i} panicked; input (save it under fuzz/regressions/{name}/): {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_fuzz_binary_and_seeds() {
            let listed = [$(stringify!($name)),*];
            let names: Vec<&str> = kaji_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, listed, "a target is missing from this test");
            for name in names {
                let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
                assert!(bin.is_file(), "{} is missing", bin.display());
            }
        }
    };
}

targets!(
    body,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    apply,
    label_selector,
    field_selector,
    quantity,
    resource_path,
    request,
);
