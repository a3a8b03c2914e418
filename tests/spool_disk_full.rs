//! A real full disk: the spool on a 256 KiB tmpfs, filled until appends fail with
//! ENOSPC, then shipped (acknowledged) while full, then collecting again. Needs
//! root to mount the tmpfs; elsewhere it says so and passes without checking.

use std::process::Command;

use wattledger::agent::spool::{FsyncPolicy, Spool};

fn lines(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("gpu,host=h,gpu=0 power_w={i}.5,energy_j={i}i {i}000000000")).collect()
}

#[test]
fn full_tmpfs_fill_ship_free_collect_again() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); the /dev/full unit test covers the same path");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt);

    // The bound is above the disk, so it is the disk that fills, not the bound.
    let mut spool = Spool::open(mnt, 4 << 20, FsyncPolicy::Always).unwrap();
    let (mut next, mut appended) = (0u32, 0u64);
    let mut enospc = 0;
    while enospc == 0 {
        match spool.append(&lines(next..next + 50)) {
            Ok(dropped) => {
                assert_eq!(dropped, 0);
                appended += 50;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
                enospc += 1;
            }
        }
        next += 50;
        assert!(next < 1_000_000, "the tmpfs never filled");
    }
    assert_eq!(spool.pending_records(), appended);

    // Ship everything while the disk is full: every acknowledgement succeeds and
    // frees the confirmed segments.
    let mut shipped = 0;
    loop {
        let b = spool.read_batch(500, 1 << 20).unwrap();
        if b.records == 0 {
            break;
        }
        shipped += b.records;
        spool.ack(b.end).expect("ack on a full disk");
    }
    assert_eq!(shipped, appended);
    assert_eq!(spool.pending_records(), 0);

    // Space is back: collecting goes on at once, nothing new is dropped, and a
    // restart does not resend the shipped backlog.
    for i in 0..20 {
        let start = 2_000_000 + i * 50;
        assert_eq!(spool.append(&lines(start..start + 50)).expect("append after space returned"), 0);
    }
    assert_eq!(spool.stats().dropped_records, 0);
    drop(spool);
    let spool = Spool::open(mnt, 4 << 20, FsyncPolicy::Always).unwrap();
    assert_eq!(spool.pending_records(), 1000);
}
