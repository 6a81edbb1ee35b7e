//! The simulator rules of departments/README.md, as pure code: which behaviour a name asks for at a
//! department, and where an application stands at a given moment of its timeline.

use std::time::Duration;

/// What the test data asks a department to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accept about 0.5 s after the push, approve about 1 s later.
    Normal,
    /// `驳回`: reject (不予受理), reason `材料不符合要求`.
    Reject,
    /// `不予`: accept, then deny (不予许可), reason `不符合许可条件`.
    Deny,
    /// `搁置`: take the push, never accept.
    Shelve,
    /// `缓办`: accept, never decide.
    Delay,
    /// `失联`: every push fails with a server error.
    Down,
    /// `抖动`: the first two pushes of an item and operation fail, the third succeeds.
    Flaky,
}

pub const REJECT_REASON: &str = "材料不符合要求";
pub const DENY_REASON: &str = "不符合许可条件";

const MARKERS: &[(&str, Behaviour)] = &[
    ("驳回", Behaviour::Reject),
    ("不予", Behaviour::Deny),
    ("搁置", Behaviour::Shelve),
    ("缓办", Behaviour::Delay),
    ("失联", Behaviour::Down),
    ("抖动", Behaviour::Flaky),
];

/// The behaviour `name` asks of department `dept`: a marker applies everywhere, or only at the
/// department named after `:` (`王驳回:hrss`).
pub fn behaviour(name: &str, dept: &str) -> Behaviour {
    for (marker, b) in MARKERS {
        let mut rest = name;
        while let Some(i) = rest.find(marker) {
            let after = &rest[i + marker.len()..];
            match after.strip_prefix(':') {
                Some(target) => {
                    let id: String = target
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect();
                    if id == dept {
                        return *b;
                    }
                }
                None => return *b,
            }
            rest = after;
        }
    }
    Behaviour::Normal
}

/// Where an application stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Taken, nothing decided.
    Received,
    /// Pre-review passed; waiting for the follow-up.
    PrecheckPassed,
    /// Pre-review failed (the document's pre-check failure).
    PrecheckFailed,
    Accepted,
    Rejected,
    Approved,
    Denied,
    Withdrawn,
}

impl Phase {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::PrecheckFailed
                | Phase::Rejected
                | Phase::Approved
                | Phase::Denied
                | Phase::Withdrawn
        )
    }
}

/// How long each step takes.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub accept_after: Duration,
    pub decide_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            accept_after: Duration::from_millis(500),
            decide_after: Duration::from_millis(1000),
        }
    }
}

/// One application's timeline. Offsets are from the push; `follow_up` is when the pre-review
/// follow-up arrived (for a pre-review application nothing is accepted before it).
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub behaviour: Behaviour,
    pub prereview: bool,
    pub follow_up: Option<Duration>,
    pub withdrawn: Option<Duration>,
}

/// A phase change and when it happens (offset from the push).
pub type Step = (Duration, Phase);

impl Timeline {
    /// Every phase change, in order.
    pub fn steps(&self, t: Timing) -> Vec<Step> {
        let mut steps = vec![(Duration::ZERO, Phase::Received)];
        let start = if self.prereview {
            if self.behaviour == Behaviour::Reject {
                steps.push((t.accept_after, Phase::PrecheckFailed));
                return self.cut(steps);
            }
            steps.push((t.accept_after, Phase::PrecheckPassed));
            match self.follow_up {
                // Accepted no earlier than the pre-check and the follow-up.
                Some(f) => f.max(t.accept_after),
                None => return self.cut(steps),
            }
        } else {
            Duration::ZERO
        };
        let accept = start + t.accept_after;
        let decide = accept + t.decide_after;
        match self.behaviour {
            Behaviour::Normal | Behaviour::Flaky | Behaviour::Down => {
                steps.push((accept, Phase::Accepted));
                steps.push((decide, Phase::Approved));
            }
            Behaviour::Reject => steps.push((accept, Phase::Rejected)),
            Behaviour::Deny => {
                steps.push((accept, Phase::Accepted));
                steps.push((decide, Phase::Denied));
            }
            Behaviour::Shelve => {}
            Behaviour::Delay => steps.push((accept, Phase::Accepted)),
        }
        self.cut(steps)
    }

    /// A withdrawal ends the timeline unless the application was already final.
    fn cut(&self, mut steps: Vec<Step>) -> Vec<Step> {
        if let Some(w) = self.withdrawn {
            let final_before = steps.iter().any(|(at, p)| *at <= w && p.is_final());
            if !final_before {
                steps.retain(|(at, _)| *at <= w);
                steps.push((w, Phase::Withdrawn));
            }
        }
        steps
    }

    /// The phase at `elapsed` since the push, with when it began.
    pub fn at(&self, t: Timing, elapsed: Duration) -> Step {
        self.steps(t)
            .into_iter()
            .rev()
            .find(|(at, _)| *at <= elapsed)
            .unwrap_or((Duration::ZERO, Phase::Received))
    }

    /// When acceptance happened, if it has by `elapsed`.
    pub fn accepted_at(&self, t: Timing, elapsed: Duration) -> Option<Duration> {
        self.steps(t)
            .into_iter()
            .find(|(at, p)| *at <= elapsed && *p == Phase::Accepted)
            .map(|(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        accept_after: Duration::from_millis(500),
        decide_after: Duration::from_millis(1000),
    };

    fn tl(b: Behaviour) -> Timeline {
        Timeline {
            behaviour: b,
            prereview: false,
            follow_up: None,
            withdrawn: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn markers_apply_everywhere_or_at_one_department() {
        assert_eq!(behaviour("王子涵", "hrss"), Behaviour::Normal);
        assert_eq!(behaviour("王驳回", "hrss"), Behaviour::Reject);
        assert_eq!(behaviour("王驳回:hrss", "hrss"), Behaviour::Reject);
        assert_eq!(behaviour("王驳回:hrss", "police"), Behaviour::Normal);
        assert_eq!(behaviour("周失联:gas", "gas"), Behaviour::Down);
        assert_eq!(behaviour("周失联:gas", "water"), Behaviour::Normal);
        assert_eq!(behaviour("搁置公司", "amr"), Behaviour::Shelve);
        assert_eq!(behaviour("缓办", "tax"), Behaviour::Delay);
        assert_eq!(behaviour("不予:medicare", "medicare"), Behaviour::Deny);
        assert_eq!(behaviour("抖动", "power"), Behaviour::Flaky);
    }

    #[test]
    fn normal_accepts_then_approves() {
        let t = tl(Behaviour::Normal);
        assert_eq!(t.at(T, ms(100)).1, Phase::Received);
        assert_eq!(t.at(T, ms(600)).1, Phase::Accepted);
        assert_eq!(t.at(T, ms(1600)), (ms(1500), Phase::Approved));
        assert_eq!(t.accepted_at(T, ms(1600)), Some(ms(500)));
    }

    #[test]
    fn each_rule_has_its_outcome() {
        assert_eq!(tl(Behaviour::Reject).at(T, ms(9000)).1, Phase::Rejected);
        assert_eq!(tl(Behaviour::Deny).at(T, ms(9000)).1, Phase::Denied);
        assert_eq!(tl(Behaviour::Shelve).at(T, ms(9000)).1, Phase::Received);
        assert_eq!(tl(Behaviour::Delay).at(T, ms(9000)).1, Phase::Accepted);
    }

    #[test]
    fn pre_review_accepts_only_after_the_follow_up() {
        let mut t = tl(Behaviour::Normal);
        t.prereview = true;
        assert_eq!(t.at(T, ms(9000)).1, Phase::PrecheckPassed);
        t.follow_up = Some(ms(5000));
        assert_eq!(t.at(T, ms(5400)).1, Phase::PrecheckPassed);
        assert_eq!(t.at(T, ms(5600)), (ms(5500), Phase::Accepted));
        assert_eq!(t.at(T, ms(6600)).1, Phase::Approved);
        let mut r = tl(Behaviour::Reject);
        r.prereview = true;
        assert_eq!(r.at(T, ms(9000)).1, Phase::PrecheckFailed);
    }

    #[test]
    fn withdrawal_stops_open_applications_only() {
        let mut t = tl(Behaviour::Delay);
        t.withdrawn = Some(ms(3000));
        assert_eq!(t.at(T, ms(4000)).1, Phase::Withdrawn);
        let mut done = tl(Behaviour::Normal);
        done.withdrawn = Some(ms(3000));
        assert_eq!(done.at(T, ms(4000)).1, Phase::Approved);
    }
}
