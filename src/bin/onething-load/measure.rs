//! Readings of the machine and of processes (memory, CPU from /proc), and percentiles.

/// (VmRSS, VmHWM) in MB.
pub fn memory(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        let line = s.lines().find(|l| l.starts_with(k)).unwrap_or_default();
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// CPU seconds (user + system) of a process.
pub fn cpu(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    f.get(11..13).map_or(0.0, |t| {
        t.iter().map(|v| v.parse().unwrap_or(0.0)).sum::<f64>() / 100.0
    })
}

/// (busy, all) CPU seconds of the whole machine so far.
pub fn machine() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or_default();
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let all: f64 = f.iter().take(8).sum();
    (
        (all - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0)) / 100.0,
        all / 100.0,
    )
}

/// (median, p99, max) of seconds, in ms.
pub fn spread(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] * 1e3;
    if v.is_empty() {
        [f64::NAN; 3]
    } else {
        [at(0.5), at(0.99), at(1.0)]
    }
}

/// Arrivals a second in the middle of a run: the middle 80 % of arrivals over the time they took
/// (the 10th to the 90th percentile of arrival times). A pipeline's delay — a case's first push
/// waits for its intake, its completion for the departments' pace — leaves this rate alone,
/// while it lowers "arrivals / (last arrival − first publish)" by the delay over the run's length.
pub fn steady(mut arrivals: Vec<f64>) -> f64 {
    if arrivals.len() < 10 {
        return f64::NAN;
    }
    arrivals.sort_by(f64::total_cmp);
    let (lo, hi) = (arrivals.len() / 10, arrivals.len() * 9 / 10);
    (hi - lo) as f64 / (arrivals[hi] - arrivals[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_ignores_a_constant_delay_and_sees_a_slowdown() {
        let even: Vec<f64> = (0..1000).map(|i| 6.0 + i as f64 / 200.0).collect();
        assert!((steady(even) - 200.0).abs() < 1e-9);
        // The second half arrives at half the pace: the middle 80 % spans both.
        let slowing: Vec<f64> = (0..1000)
            .map(|i| match i {
                0..500 => i as f64 / 200.0,
                _ => 2.5 + (i - 500) as f64 / 100.0,
            })
            .collect();
        let r = steady(slowing);
        assert!(r > 100.0 && r < 150.0, "{r}");
    }
}
