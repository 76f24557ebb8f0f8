//! The system calls Rust's standard library does not wrap, each behind a safe function. This is
//! the crate's only `unsafe` (tests/it/tidy.rs), so the review of it is one short file.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// `flock(2)` on `file`; `operation` as there (e.g. `LOCK_EX | LOCK_NB`).
pub fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor `file` owns for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Files this process creates from now on are not readable by others (`umask 027`: databases,
/// backups, receipts, keys), whatever umask it was started with.
pub fn private_files() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o027) };
}

/// Raises this process's open-file limit to what `wanted` descriptors need, within the hard
/// limit; returns the soft limit now in force.
pub fn open_file_limit(wanted: u64) -> u64 {
    // SAFETY: `rlimit` is plain data, filled by getrlimit for the duration of the call.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < wanted as libc::rlim_t {
        let raised = libc::rlimit { rlim_cur: (wanted as libc::rlim_t).min(limit.rlim_max), rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the rlimit passed; lowering nothing, raising within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur as u64;
        }
    }
    limit.rlim_cur as u64
}

/// Whether the kernel believes its clock is synchronised (`ntp_adjtime`, which any NTP daemon —
/// chrony, ntpd, timesyncd — keeps up to date).
pub fn kernel_clock_synchronized() -> bool {
    // SAFETY: `timex` is plain data; modes = 0 only reads the kernel's state.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `timex` is a valid, exclusively borrowed timex for the duration of the call.
    let state = unsafe { libc::ntp_adjtime(&mut timex) };
    state >= 0 && state != libc::TIME_ERROR && timex.status & libc::STA_UNSYNC == 0
}

/// The box's address on its LAN: the source address of its route outward (a UDP socket
/// "connected" to a documentation address sends nothing), if it has one.
pub fn lan_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// The box's host name, if it has one.
pub fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `buffer.len()` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0)?;
    let name = std::str::from_utf8(&buffer[..end]).ok()?.trim();
    (ok && !name.is_empty()).then(|| name.to_owned())
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by statvfs before we read it.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // 32-bit ARM (armhf) has 32-bit fields here; the casts are not no-ops there.
    #[allow(clippy::unnecessary_cast)]
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// `CLOCK_MONOTONIC` now, as a duration since the kernel's (unspecified) origin: what
/// `std::time::Instant` reads on Linux, but a number another process on the box can place on
/// its own `Instant` line (the device's process times a clip from the station's request).
pub fn monotonic_now() -> std::time::Duration {
    // SAFETY: `timespec` is plain data, filled by clock_gettime for the duration of the call.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusively borrowed timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Gives back what start-up left resident and idle does not need: the heap's free memory
/// (`malloc_trim`), and the pages of code (`MADV_DONTNEED` on every executable file mapping:
/// this binary's and its libraries') and of this binary's first, never-relocated read-only
/// mapping. They are file-backed and unmodified, so the kernel reloads any page touched again
/// from the file. Relocated read-only data (RELRO), writable data and any mapping with a page
/// written since it was mapped are left alone: their contents are not the file's. Returns the
/// bytes of mappings given back.
pub fn return_idle_pages() -> usize {
    // SAFETY: malloc_trim only returns free heap memory to the kernel; glibc's own lock guards it.
    unsafe { libc::malloc_trim(0) };
    let (Ok(exe), Ok(smaps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps"))
    else {
        return 0;
    };
    // Only where /proc describes this very address space: the mapping that holds this function
    // must be this binary's code. (Under an emulator such as qemu-user, /proc/self/smaps may be
    // the emulator's own, at addresses that mean something else here.)
    let here = return_idle_pages as *const () as usize;
    let mut describes_us = false;
    // Each mapping: a header "start-end perms offset dev inode path", then "Name: value" lines.
    let mut mappings: Vec<(usize, usize, bool, u64)> = Vec::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [range, perms, offset, _, _, path] = fields[..] {
            let Some((start, end)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
                continue;
            };
            let (ours, code) = (Path::new(path) == exe, perms == "r-xp" && path.starts_with('/'));
            describes_us |= ours && code && (start..end).contains(&here);
            let first_read_only = ours && perms == "r--p" && offset.trim_start_matches('0').is_empty();
            mappings.push((start, end, code || first_read_only, 0));
        } else if let (Some(last), ["Anonymous:", kib, ..]) = (mappings.last_mut(), &fields[..]) {
            last.3 = kib.parse().unwrap_or(u64::MAX);
        }
    }
    if !describes_us {
        return 0;
    }
    let mut given = 0;
    // A page written since it was mapped (a library relocated in its text) is not the file's:
    // only mappings with no such page are given back.
    for (start, end, _, _) in mappings.into_iter().filter(|&(_, _, pristine, written)| pristine && written == 0) {
        // SAFETY: a private, read-only file mapping with no page written (code, and this
        // binary's read-only data before the first relocation): dropping its pages only makes
        // the next access read the same bytes from the file.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            given += end - start;
        }
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_pages_are_given_back_and_the_code_runs_on_from_the_file() {
        let given = return_idle_pages();
        assert!(given > 0, "this test binary's own code is a pristine file mapping");
        // The code and read-only data dropped are read again from the file as they run.
        let words: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(words.concat().len(), 2890);
        assert!(return_idle_pages() > 0);
    }

    #[test]
    fn free_bytes_of_a_real_directory_and_a_missing_one() {
        assert!(free_bytes(Path::new("/tmp")).unwrap() > 0);
        assert_eq!(free_bytes(Path::new("/no/such/dir")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_second_exclusive_flock_on_the_same_file_would_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let (a, b) = (File::create(&path).unwrap(), File::open(&path).unwrap());
        flock(&a, libc::LOCK_EX | libc::LOCK_NB).unwrap();
        assert_eq!(flock(&b, libc::LOCK_EX | libc::LOCK_NB).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        flock(&a, libc::LOCK_UN).unwrap();
        flock(&b, libc::LOCK_EX | libc::LOCK_NB).unwrap();
    }
}
