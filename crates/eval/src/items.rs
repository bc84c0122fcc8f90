//! Which items each stage measures on: held-out items for evaluation, the calibration items a
//! target search measures on, and the fresh items a shrinkage search measures on.

use bitsearch_pipeline::workload::{Pairing, WorkloadSpec};

/// The evaluation items: the sensitivity run's generation settings `base` with seeds that
/// neither it nor calibration (which reuses its items) used, every prompt with every seed, and
/// `prompts` (held-out prompts) in place of its prompts when given. Returns the spec and a
/// sentence saying how its items relate to the sensitivity items.
pub fn held_out(
    base: &WorkloadSpec,
    seeds: Option<Vec<u64>>,
    num_seeds: u64,
    prompts: Option<Vec<String>>,
) -> (WorkloadSpec, String) {
    let mut spec = base.clone();
    spec.pair_every_with(seeds.unwrap_or_else(|| (0..num_seeds).map(|i| HELD_OUT_SEED + i).collect()));
    let used = base.item_seeds();
    let shared_seeds: Vec<u64> = spec.seeds.iter().copied().filter(|s| used.contains(s)).collect();
    let mut words = vec![format!("seeds {:?} (sensitivity and calibration: {}", spec.seeds, base.describe_seeds())];
    words[0].push_str(
        if shared_seeds.is_empty() { ")".into() } else { format!("; {shared_seeds:?} shared: NOT held out)") }.as_str(),
    );
    if let Some(prompts) = prompts {
        words.push(replace_prompts(&mut spec, base, prompts, "held-out"));
    } else if !spec.prompts.is_empty() {
        words.push(format!("the {} sensitivity prompts", spec.prompts.len()));
    }
    if !spec.conditions.is_empty() {
        let conditions: Vec<String> = spec.conditions.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        let same = spec.conditions == base.conditions;
        words.push(format!("conditions {}{}", conditions.join(" "), if same { " as in sensitivity" } else { "" }));
    }
    (spec, words.join("; "))
}

/// Items a target search measures on unless told otherwise: the SQNR of one or two items
/// says little about the next ones.
pub const CALIBRATION_ITEMS: usize = 8;

/// The items a target search measures on: every prompt with each of `seeds` and the sensitivity
/// run's other settings `base`; else the sensitivity items themselves, under `every` pairing
/// followed by the next unused small seeds until there are at least `min_items` items (far
/// below [`HELD_OUT_SEED`], so evaluation stays held out). Returns the spec and a sentence
/// saying what they are.
pub fn calibration(base: &WorkloadSpec, seeds: Option<Vec<u64>>, min_items: usize) -> (WorkloadSpec, String) {
    let mut spec = base.clone();
    let per_seed = base.sets();
    if let Some(seeds) = seeds {
        spec.pair_every_with(seeds);
    } else if base.pairing == Pairing::Every {
        while spec.seeds.len() * per_seed < min_items {
            let next = (0..).find(|s| !spec.seeds.contains(s)).unwrap_or_default();
            spec.seeds.push(next);
        }
    }
    let words = describe_items("calibration", &spec, base);
    (spec, words)
}

/// The items a shrinkage search or a prediction fit measures on: every prompt (or condition set)
/// of the sensitivity run `base`, or every one of `prompts` when given (prompts drawn as the
/// deployment's are, none of them held out), with each of `seeds`, else with the smallest seeds
/// the run did not use, at least two and enough for `min_items` items, below [`HELD_OUT_SEED`].
/// A plan chosen by how well it measures on the table's own items would be rewarded for
/// trusting the table's noise. Returns the spec and a sentence saying what they are.
pub fn fresh(
    base: &WorkloadSpec,
    seeds: Option<Vec<u64>>,
    min_items: usize,
    prompts: Option<Vec<String>>,
) -> (WorkloadSpec, String) {
    let mut spec = base.clone();
    let replaced = prompts.map(|prompts| replace_prompts(&mut spec, base, prompts, "selection"));
    let per_seed = spec.sets().max(1);
    let seeds = seeds.unwrap_or_else(|| {
        let used = base.item_seeds();
        let wanted = min_items.div_ceil(per_seed).max(2);
        (0..HELD_OUT_SEED).filter(|s| !used.contains(s)).take(wanted).collect()
    });
    spec.pair_every_with(seeds);
    let mut words = describe_items("selection", &spec, base);
    if let Some(replaced) = replaced {
        words = format!("{words}; {replaced}");
    }
    (spec, words)
}

/// Puts `prompts` in place of `spec`'s, saying how many of them the sensitivity run `base` used.
fn replace_prompts(spec: &mut WorkloadSpec, base: &WorkloadSpec, prompts: Vec<String>, what: &str) -> String {
    let shared = prompts.iter().filter(|p| base.prompts.contains(p)).count();
    let (n, sensitivity) = (prompts.len(), base.prompts.len());
    spec.prompts = prompts;
    format!("{n} {what} prompts ({shared} of them among the {sensitivity} sensitivity prompts)")
}

fn describe_items(what: &str, spec: &WorkloadSpec, base: &WorkloadSpec) -> String {
    let items = spec.pairs(spec.sets()).map_or(0, |p| p.len());
    format!("{what} items: seeds {} (sensitivity: {}), {items} item(s)", spec.describe_seeds(), base.describe_seeds())
}

/// First default evaluation seed: far from the small seeds sensitivity runs use.
pub const HELD_OUT_SEED: u64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn zipped() -> WorkloadSpec {
        let prompts = (0..4).map(|i| format!("prompt {i}")).collect();
        WorkloadSpec { prompts, seeds: vec![998], pairing: Pairing::Zip, ..Default::default() }
    }

    #[test]
    fn held_out_items_take_every_seed_and_see_the_zipped_seeds_of_the_sensitivity_run() {
        let (spec, words) = held_out(&zipped(), None, 2, None);
        assert_eq!((spec.pairing, spec.seeds.clone()), (Pairing::Every, vec![1000, 1001]));
        assert_eq!(spec.pairs(spec.prompts.len()).unwrap().len(), 8);
        assert!(words.contains("[1000, 1001] shared: NOT held out"), "{words}");
        assert!(words.contains("998..=1001, one per item"), "{words}");
    }

    #[test]
    fn calibration_reuses_zipped_items_and_extends_shared_seeds_to_the_minimum() {
        let (spec, words) = calibration(&zipped(), None, 8);
        assert_eq!(spec, zipped());
        assert!(words.ends_with("4 item(s)"), "{words}");
        let every = WorkloadSpec { pairing: Pairing::Every, seeds: vec![1], ..zipped() };
        let (spec, words) = calibration(&every, None, 9);
        assert_eq!(spec.seeds, vec![1, 0, 2]);
        assert!(words.ends_with("12 item(s)"), "{words}");
        let (spec, _) = calibration(&zipped(), Some(vec![5, 6]), 8);
        assert_eq!((spec.pairing, spec.seeds), (Pairing::Every, vec![5, 6]));
    }

    #[test]
    fn selection_items_take_seeds_the_sensitivity_run_never_used() {
        let (spec, words) = fresh(&zipped(), None, 8, None);
        let used = zipped().item_seeds();
        assert_eq!(spec.pairing, Pairing::Every);
        assert!(spec.seeds.len() >= 2 && spec.seeds.iter().all(|s| !used.contains(s) && *s < HELD_OUT_SEED));
        assert!(words.starts_with("selection items") && words.ends_with(&format!("{} item(s)", spec.seeds.len() * 4)));
        assert_eq!(spec.seeds.len() * zipped().sets(), 8);
        let (spec, _) = fresh(&zipped(), Some(vec![7]), 8, None);
        assert_eq!(spec.seeds, vec![7]);
        // Prompts of their own: the same unused seeds, as many as those prompts need.
        let prompts = vec!["prompt 0".to_string(), "another".into(), "a third".into()];
        let (spec, words) = fresh(&zipped(), None, 8, Some(prompts.clone()));
        assert_eq!((spec.prompts.clone(), spec.seeds.len()), (prompts, 3));
        assert!(spec.seeds.iter().all(|s| !used.contains(s)));
        assert!(
            words.contains("9 item(s); 3 selection prompts (1 of them among the 4 sensitivity prompts)"),
            "{words}"
        );
    }
}
