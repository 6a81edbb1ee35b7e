//! The file exchange: atomic writes never show a partial file, pending answers skip dot-files and
//! folders, answers are filed into done/ and error/ (with the reason), nothing is overwritten.

use std::path::{Path, PathBuf};

use onething::transport::folder;

/// A fresh folder under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("onething-transport-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn atomic_write_never_shows_a_partial_file() {
    let dir = TempDir::new("atomic");
    let content = |i: usize| vec![b'a' + (i % 26) as u8; 256 * 1024];
    let writer = {
        let dir = dir.0.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                folder::write_atomic(&dir, &format!("C{i:02}_ZYDJ.xml"), &content(i)).unwrap();
            }
        })
    };
    // Whatever a reader finds under a final name is complete.
    let mut checked = 0;
    loop {
        let done = writer.is_finished();
        for path in folder::pending_answers(&dir.0).unwrap() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let i: usize = name[1..3].parse().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), content(i), "{name}");
            checked += 1;
        }
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert!(checked >= 20);
    let left = names(&dir.0);
    assert_eq!(left.len(), 20, "{left:?}");
    assert!(
        left.iter().all(|n| !n.starts_with('.')),
        "no temporary left"
    );
    assert!(folder::write_atomic(&dir.0, "../escape.xml", b"x").is_err());
    assert!(folder::write_atomic(&dir.0, ".hidden.xml", b"x").is_err());
}

#[test]
fn pending_answers_ignore_dot_files_and_folders() {
    let dir = TempDir::new("pending");
    let inbox = &dir.0;
    for n in [
        "b_ZYDJ_20260316091600_02.xml",
        "a_ZYDJ_20260316091500_01.xml",
    ] {
        std::fs::write(inbox.join(n), "x").unwrap();
    }
    std::fs::write(inbox.join(".c_ZYDJ_20260316091700_01.xml"), "partial").unwrap();
    std::fs::create_dir_all(inbox.join("done")).unwrap();
    std::fs::write(inbox.join("done/old.xml"), "x").unwrap();
    std::fs::create_dir_all(inbox.join("folder.xml")).unwrap();
    let found: Vec<String> = folder::pending_answers(inbox)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        found,
        [
            "a_ZYDJ_20260316091500_01.xml",
            "b_ZYDJ_20260316091600_02.xml"
        ]
    );
}

#[test]
fn answers_are_filed_into_done_and_error() {
    let dir = TempDir::new("filing");
    let inbox = &dir.0;
    let good = inbox.join("A_ZYDJ_20260316091500_01.xml");
    std::fs::write(&good, "first").unwrap();
    folder::file_done(&good).unwrap();
    assert!(!good.exists());
    assert_eq!(
        std::fs::read_to_string(inbox.join("done/A_ZYDJ_20260316091500_01.xml")).unwrap(),
        "first"
    );
    // The same name again: filed beside, nothing overwritten.
    std::fs::write(&good, "second").unwrap();
    folder::file_done(&good).unwrap();
    assert_eq!(
        names(&inbox.join("done")),
        [
            "A_ZYDJ_20260316091500_01.xml",
            "A_ZYDJ_20260316091500_01.xml.1"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(inbox.join("done/A_ZYDJ_20260316091500_01.xml.1")).unwrap(),
        "second"
    );

    let bad = inbox.join("B_ZYDJ_20260316091500_01.xml");
    std::fs::write(&bad, "<broken").unwrap();
    folder::file_error(&bad, "not well-formed XML at 1:8").unwrap();
    assert!(!bad.exists());
    assert_eq!(
        names(&inbox.join("error")),
        [
            "B_ZYDJ_20260316091500_01.xml",
            "B_ZYDJ_20260316091500_01.xml.reason"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(inbox.join("error/B_ZYDJ_20260316091500_01.xml")).unwrap(),
        "<broken"
    );
    assert_eq!(
        std::fs::read_to_string(inbox.join("error/B_ZYDJ_20260316091500_01.xml.reason")).unwrap(),
        "not well-formed XML at 1:8\n"
    );
    assert!(folder::pending_answers(inbox).unwrap().is_empty());
}

#[test]
fn still_waiting_until_taken() {
    let dir = TempDir::new("outbox");
    let name = "C1_ZYDJ_20260316091500.xml";
    assert!(!folder::still_waiting(&dir.0, name));
    folder::write_atomic(&dir.0, name, b"<BDCSQ/>").unwrap();
    assert!(folder::still_waiting(&dir.0, name));
    std::fs::remove_file(dir.0.join(name)).unwrap();
    assert!(!folder::still_waiting(&dir.0, name));
}

#[test]
fn an_answer_is_taken_by_one_instance_and_given_back_when_it_died() {
    let dir = TempDir::new("taking");
    let inbox = &dir.0;
    let answer = inbox.join("A_ZYDJ_20260316091500_01.xml");
    std::fs::write(&answer, "first").unwrap();
    let taken = folder::Taken::take(inbox, &answer, "a")
        .unwrap()
        .expect("a takes it");
    assert!(
        folder::Taken::take(inbox, &answer, "b").unwrap().is_none(),
        "b finds it gone"
    );
    assert!(
        folder::pending_answers(inbox).unwrap().is_empty(),
        "not pending while taken"
    );
    // b does not give back a's recent claim; a (restarting) gives back its own at once.
    let long = std::time::Duration::from_secs(3600);
    assert_eq!(folder::give_back_taken(inbox, "b", long).unwrap(), 0);
    assert_eq!(folder::give_back_taken(inbox, "a", long).unwrap(), 1);
    assert_eq!(
        folder::pending_answers(inbox).unwrap(),
        vec![answer.clone()]
    );
    assert!(
        taken.done().is_err(),
        "a's old claim is void once given back"
    );
    // Taken again by a, which dies: once the claim is older than `stale`, b gives it back.
    folder::Taken::take(inbox, &answer, "a").unwrap().unwrap();
    assert_eq!(
        folder::give_back_taken(inbox, "b", std::time::Duration::ZERO).unwrap(),
        1
    );
    assert_eq!(
        folder::pending_answers(inbox).unwrap(),
        vec![answer.clone()]
    );
    // Filed by whoever holds it: done/ under the inbox, with its name.
    let b = inbox.join("B_ZYDJ_20260316091500_01.xml");
    std::fs::write(&b, "second").unwrap();
    folder::Taken::take(inbox, &b, "b")
        .unwrap()
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(inbox.join("done/B_ZYDJ_20260316091500_01.xml")).unwrap(),
        "second"
    );
}
