//! Which part of the probe list a process computes, fixed (`i/N`) or taken from the cluster
//! scheduler that started it (`auto`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which part of the probe list a process computes: windows `index`, `index + count`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N` with i in 0..N.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parse = || -> Option<Shard> {
            let (i, n) = s.split_once('/')?;
            Some(Shard { index: i.trim().parse().ok()?, count: n.trim().parse().ok()? })
        };
        match parse() {
            Some(shard) if shard.count > 0 && shard.index < shard.count => Ok(shard),
            _ => Err(format!("'{s}' is not a shard: expected i/N with 0 <= i < N, e.g. 0/4")),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `--shard` asks for: a fixed part `i/N`, or `auto` (`auto/N`), the index (and count)
/// taken from the cluster scheduler that started the process: a Slurm job array or a
/// Kubernetes Indexed Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    /// `count` given as `auto/N`; Slurm states it itself, a Kubernetes Indexed Job does not.
    Auto {
        count: Option<usize>,
    },
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let Some(rest) = s.trim().strip_prefix("auto") else { return s.parse().map(ShardSpec::Fixed) };
        match rest.strip_prefix('/').map(|n| n.trim().parse::<usize>()) {
            None if rest.is_empty() => Ok(ShardSpec::Auto { count: None }),
            Some(Ok(count)) if count > 0 => Ok(ShardSpec::Auto { count: Some(count) }),
            _ => Err(format!("'{s}' is not a shard: expected i/N, auto or auto/N (N at least 1)")),
        }
    }
}

impl ShardSpec {
    /// The shard, `auto` read from the environment through `var` (a variable's value, None
    /// where it is unset): a Slurm array task's index is `(SLURM_ARRAY_TASK_ID − _MIN) / _STEP`
    /// of `SLURM_ARRAY_TASK_COUNT` (or as many as `_MIN` to `_MAX` hold), a Kubernetes
    /// Indexed Job's `JOB_COMPLETION_INDEX` of the `N` given.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> std::result::Result<Shard, String> {
        let count = match self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto { count } => count,
        };
        let number = |name: &str| -> std::result::Result<Option<usize>, String> {
            var(name)
                .map(|v| v.trim().parse().map_err(|_| format!("{name}={v} is not a non-negative integer")))
                .transpose()
        };
        let shard = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let tasks = match (number("SLURM_ARRAY_TASK_COUNT")?, number("SLURM_ARRAY_TASK_MAX")?) {
                (Some(n), _) => n,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => return Err("--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor a SLURM_ARRAY_TASK_MAX at or above SLURM_ARRAY_TASK_MIN".into()),
            };
            if id < min || (id - min) % step != 0 {
                return Err(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} is not in the array {min}, {}, …",
                    min + step
                ));
            }
            if count.is_some_and(|n| n != tasks) {
                return Err(format!("--shard auto/{}: the Slurm array has {tasks} tasks", count.unwrap_or_default()));
            }
            Shard { index: (id - min) / step, count: tasks }
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or(
                "--shard auto: JOB_COMPLETION_INDEX is set but the count is not: give --shard auto/N with the Job's completions",
            )?;
            Shard { index, count }
        } else {
            return Err("--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set (run it as a Slurm array task or a Kubernetes Indexed Job, or give --shard i/N)".into());
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(format!("--shard auto: task {} of {} is outside the array", shard.index, shard.count));
        }
        Ok(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_shards_come_from_slurm_or_kubernetes_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let auto = |text: &str| text.parse::<ShardSpec>().unwrap();
        let shard = |index, count| Ok(Shard { index, count });
        // `sbatch --array=1-3`: ids from 1.
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(auto("auto").resolve(slurm), shard(2, 3));
        assert_eq!(auto("auto/3").resolve(slurm), shard(2, 3));
        assert!(auto("auto/4").resolve(slurm).unwrap_err().contains("has 3 tasks"));
        // `--array=0-12:4` without a count: 0, 4, 8, 12.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "12"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ]);
        assert_eq!(auto("auto").resolve(stepped), shard(2, 4));
        let kubernetes = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(auto("auto/2").resolve(kubernetes), shard(1, 2));
        assert!(auto("auto").resolve(kubernetes).unwrap_err().contains("auto/N"));
        assert!(auto("auto/1").resolve(kubernetes).unwrap_err().contains("outside the array"));
        assert!(auto("auto").resolve(env(&[])).unwrap_err().contains("neither SLURM_ARRAY_TASK_ID"));
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(auto("auto").resolve(bad).unwrap_err().contains("SLURM_ARRAY_TASK_ID=x"));
        assert_eq!("1/4".parse::<ShardSpec>().unwrap().resolve(env(&[])), shard(1, 4));
        for text in ["auto/0", "auto/x", "autox", "4/4"] {
            assert!(text.parse::<ShardSpec>().is_err(), "{text}");
        }
    }
}
