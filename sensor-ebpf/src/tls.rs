//! TLS plaintext capture (R-CAP-4): uprobes on OpenSSL's `SSL_read`, `SSL_read_ex`,
//! `SSL_write`, `SSL_write_ex` and `SSL_free` (shared `libssl.so.3` or linked into an
//! executable: the same programs, attached by file), on GnuTLS's `gnutls_record_recv`,
//! `gnutls_record_send` and `gnutls_deinit`, and tracepoints that tell which TCP connection a
//! call used, without kprobes.
//!
//! - GnuTLS's calls have OpenSSL's shape (connection object, buffer, length): the
//!   `gnutls_session_t` plays the `SSL *`, `gnutls_handshake` the handshake and
//!   `gnutls_deinit` the free; only the result differs (`ssize_t` bytes, negative on error),
//!   which the entry probe marks for the shared return probe.
//! - The entry probe of a read or write call remembers, per thread, the `SSL *`, the buffer
//!   and (for the `_ex` forms) where the length will be returned.
//! - The raw tracepoints `sock_send_length` / `sock_recv_length` fire inside the socket I/O the
//!   library does during the call, on the same thread: they bind the `SSL *` to the socket.
//!   A call served from the library's buffer (no socket I/O) uses the binding of an earlier
//!   call on the same `SSL *`.
//! - The raw tracepoint `inet_sock_set_state` records each TCP socket's 4-tuple when it is
//!   established, and its role: SYN_SENT → ESTABLISHED is the connecting side, SYN_RECV →
//!   ESTABLISHED the accepting side. Fields are read at offsets the agent took from the
//!   kernel's BTF; raw tracepoints need no tracefs.
//! - The return probe copies the plaintext the call returned out of the process's memory into
//!   ring records of at most 16 KiB, continuing by tail calls for long calls; each record
//!   carries its offset in the direction's plaintext stream, so the agent sees any loss.
//! - `SSL_free` reports the connection's end.
//! - Go's `crypto/tls` (x86-64, register ABI of Go 1.17+): `(*Conn).Read`/`Write` are entered
//!   with the receiver in RAX and the buffer in RBX; the goroutine (`g`) is in R14 throughout.
//!   Go grows stacks by copying them, which breaks a uretprobe's rewritten return address, so
//!   the return is probed at each `RET` instruction the agent found in the function's code,
//!   where RAX holds the byte count. The call's state is kept per (process, goroutine): the
//!   goroutine may resume on another thread. The socket comes from the file descriptor in
//!   the `net.Conn` (`tls.Conn.conn` → `*net.TCPConn` → `netFD.pfd.Sysfd`, layout stable since
//!   Go 1.12) through the task's file table, so no socket tracepoint (which may fire on a
//!   thread now running another goroutine) is needed. `(*Conn).Close` reports the end.
//! - Raw tracepoints `sched_process_exec`/`sched_process_fork` keep the executable of each
//!   selected process; each exec is also reported to the agent, which counts a process whose
//!   TLS library was not probed at start.
//!
//! Processes are selected by command name in [`TLS_COMMS`] or by executable in
//! [`TLS_EXE_SELECT`] (or all of them), connections optionally by port in [`TLS_PORTS`]. The probes only
//! read the traced process's memory: its behaviour is never changed. Every call whose
//! plaintext could not be captured, or only in part, bumps a counter named after its cause.

use crate::capture::wakeup_flags;
use apitap_common::{
    FAMILY_IPV4, FAMILY_IPV6,
    tls::{
        EXE_BYTES, MAX_TLS_COMMS, MAX_TLS_EXES, MAX_TLS_INFLIGHT, MAX_TLS_PORTS, MAX_TLS_SOCKETS,
        SNI_BYTES, TLS_CHUNK_BYTES, TLS_CHUNKS_PER_RUN, TLS_HEADER_BYTES, TLS_RUNS_PER_CALL,
        TLS_SMALL_CHUNK_BYTES, TlsConfig, TlsCounter, TlsExe, TlsHeader, TlsKind, TlsRecord,
        TlsSmallRecord, TlsSocket, role, tls_flags,
    },
};
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
        generated::{
            bpf_get_attach_cookie, bpf_get_current_cgroup_id, bpf_get_current_uid_gid,
            bpf_ktime_get_ns, bpf_probe_read_user,
        },
    },
    macros::{map, raw_tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};

/// Default ring size; the agent overrides it from `tls.ring_buffer_bytes`.
#[map]
static TLS_EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
static TLS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TlsCounter::COUNT, 0);

#[map]
static TLS_CONFIG: Array<TlsConfig> = Array::with_max_entries(1, 0);

#[map]
static TLS_COMMS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_TLS_COMMS, 0);

#[map]
static TLS_EXES: LruHashMap<u32, TlsExe> = LruHashMap::with_max_entries(MAX_TLS_EXES, 0);

#[map]
static TLS_EXE_SELECT: HashMap<[u8; EXE_BYTES], u8> = HashMap::with_max_entries(MAX_TLS_COMMS, 0);

#[map]
static TLS_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_TLS_PORTS, 0);

#[map]
static TLS_SOCKETS: LruHashMap<u64, TlsSocket> = LruHashMap::with_max_entries(MAX_TLS_SOCKETS, 0);

/// `(tgid, SSL *)` → what the probes know of that TLS connection.
#[map]
static TLS_CONNS: LruHashMap<ConnKey, ConnState> = LruHashMap::with_max_entries(MAX_TLS_SOCKETS, 0);

/// Thread (`pid_tgid`) → the call it is inside.
#[map]
static TLS_INFLIGHT: LruHashMap<u64, InFlight> = LruHashMap::with_max_entries(MAX_TLS_INFLIGHT, 0);

/// `(tgid, goroutine)` → the Go `crypto/tls` call it is inside (a goroutine may move between
/// threads during the call, so not per thread).
#[map]
static GO_INFLIGHT: LruHashMap<ConnKey, InFlight> =
    LruHashMap::with_max_entries(MAX_TLS_INFLIGHT, 0);

/// Thread (`pid_tgid`) → the `SSL *` of its `SSL_get_servername` call.
#[map]
static SNI_INFLIGHT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_TLS_INFLIGHT, 0);

/// Slot 0: [`apitap_tls_continue`], tail-called to copy the rest of a long call.
#[map]
static TLS_TAIL: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct ConnKey {
    ssl: u64,
    tgid: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ConnState {
    sock: u64,
    /// Plaintext bytes seen so far per direction ([`TlsKind`] Read = 0, Write = 1).
    offsets: [u64; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InFlight {
    ssl: u64,
    buf: u64,
    /// `size_t *` the `_ex` forms return the length through; 0 for the plain forms.
    len_ptr: u64,
    sock: u64,
    stream_offset: u64,
    /// Bytes the call returned (set by the return probe).
    len: u32,
    /// Bytes copied so far.
    done: u32,
    runs: u32,
    kind: u8,
    library: u8,
    /// [`RET_INT`] or [`RET_SSIZE`]: the width of the function's result.
    ret: u8,
    _pad: u8,
}

/// The state of a record that reports no call's plaintext (a handshake's binding, a close,
/// an exec, a server name).
#[inline(always)]
fn notice(ssl: u64, sock: u64, kind: u8, library: u8) -> InFlight {
    InFlight {
        ssl,
        buf: 0,
        len_ptr: 0,
        sock,
        stream_offset: 0,
        len: 0,
        done: 0,
        runs: 0,
        kind,
        library,
        ret: RET_INT,
        _pad: 0,
    }
}

/// The call returns a C `int` (OpenSSL).
const RET_INT: u8 = 0;
/// The call returns `ssize_t` (GnuTLS's record functions).
const RET_SSIZE: u8 = 1;

/// Why a call was not captured, or only partly; each maps to one counter.
#[derive(Clone, Copy)]
enum Loss {
    RingFull,
    ReadFailed,
    NoEntry,
}

impl Loss {
    #[inline(always)]
    fn counter(self) -> TlsCounter {
        match self {
            Loss::RingFull => TlsCounter::RingFull,
            Loss::ReadFailed => TlsCounter::ReadFailed,
            Loss::NoEntry => TlsCounter::NoEntry,
        }
    }
}

/// Not selected, disabled or nothing to do: no counter.
struct Skip;

#[inline(always)]
fn bump(counter: TlsCounter, by: u64) {
    if let Some(slot) = TLS_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; the program does not migrate while it runs.
        unsafe { *slot += by };
    }
}

#[inline(always)]
fn enabled() -> Option<u32> {
    let cfg = TLS_CONFIG.get(0)?;
    (cfg.flags & tls_flags::ENABLED != 0).then_some(cfg.flags)
}

/// Whether the current process is one the configuration selects.
#[inline(always)]
fn selected() -> bool {
    let Some(flags) = enabled() else {
        return false;
    };
    if flags & tls_flags::ALL_PROCESSES != 0 {
        return true;
    }
    if let Ok(comm) = bpf_get_current_comm()
        && comm_selected(&comm)
    {
        return true;
    }
    if flags & tls_flags::BY_EXECUTABLE == 0 {
        return false;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: plain lookups; the key is map memory, only read by the lookup.
    unsafe { TLS_EXES.get(&tgid).is_some_and(|e| exe_selected(&e.path)) }
}

#[inline(always)]
fn exe_selected(path: &[u8; EXE_BYTES]) -> bool {
    // SAFETY: plain lookup; the value is not kept.
    unsafe { TLS_EXE_SELECT.get(path).is_some() }
}

/// With `tls.ports`: whether the socket's port is selected (the local port of an accepting
/// socket, the remote one of a connecting socket, either if the role is unknown). A socket
/// whose 4-tuple was not seen passes: its port cannot be told.
#[inline(always)]
fn port_selected(sock: u64) -> bool {
    let Some(flags) = enabled() else {
        return false;
    };
    if flags & tls_flags::BY_PORT == 0 || sock == 0 {
        return true;
    }
    // SAFETY: plain lookups; values are copied.
    unsafe {
        let Some(s) = TLS_SOCKETS.get(&sock) else {
            return true;
        };
        let (l, r) = (s.lport, s.rport);
        match s.role {
            role::SERVER => TLS_PORTS.get(&l).is_some(),
            role::CLIENT => TLS_PORTS.get(&r).is_some(),
            _ => TLS_PORTS.get(&l).is_some() || TLS_PORTS.get(&r).is_some(),
        }
    }
}

#[inline(always)]
fn comm_selected(comm: &[u8; 16]) -> bool {
    // SAFETY: plain lookup; the value is not kept.
    unsafe { TLS_COMMS.get(comm).is_some() }
}

#[uprobe]
pub fn apitap_ssl_read_entry(ctx: ProbeContext) -> u32 {
    let _ = enter(&ctx, TlsKind::Read, false);
    0
}

#[uprobe]
pub fn apitap_ssl_read_ex_entry(ctx: ProbeContext) -> u32 {
    let _ = enter(&ctx, TlsKind::Read, true);
    0
}

#[uprobe]
pub fn apitap_ssl_write_entry(ctx: ProbeContext) -> u32 {
    let _ = enter(&ctx, TlsKind::Write, false);
    0
}

#[uprobe]
pub fn apitap_ssl_write_ex_entry(ctx: ProbeContext) -> u32 {
    let _ = enter(&ctx, TlsKind::Write, true);
    0
}

/// `gnutls_record_recv(gnutls_session_t, void *data, size_t len)` → `ssize_t`.
#[uprobe]
pub fn apitap_gnutls_recv_entry(ctx: ProbeContext) -> u32 {
    let _ = enter_with(&ctx, TlsKind::Read, false, RET_SSIZE);
    0
}

/// `gnutls_record_send(gnutls_session_t, const void *data, size_t len)` → `ssize_t`.
#[uprobe]
pub fn apitap_gnutls_send_entry(ctx: ProbeContext) -> u32 {
    let _ = enter_with(&ctx, TlsKind::Write, false, RET_SSIZE);
    0
}

#[inline(always)]
fn enter(ctx: &ProbeContext, kind: TlsKind, ex: bool) -> Result<(), Skip> {
    enter_with(ctx, kind, ex, RET_INT)
}

#[inline(always)]
fn enter_with(ctx: &ProbeContext, kind: TlsKind, ex: bool, ret: u8) -> Result<(), Skip> {
    if !selected() {
        return Err(Skip);
    }
    let ssl: u64 = ctx.arg(0).ok_or(Skip)?;
    let buf: u64 = ctx.arg(1).ok_or(Skip)?;
    let len_ptr: u64 = if ex { ctx.arg(3).ok_or(Skip)? } else { 0 };
    let id = bpf_get_current_pid_tgid();
    let key = ConnKey {
        ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain lookup, the value is copied.
    let sock = unsafe { TLS_CONNS.get(&key) }.map_or(0, |c| c.sock);
    // SAFETY: the cookie helper takes the program's own context.
    let library = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8;
    let entry = InFlight {
        ssl,
        buf,
        len_ptr,
        sock,
        stream_offset: 0,
        len: 0,
        done: 0,
        runs: 0,
        kind: kind as u8,
        library,
        ret,
        _pad: 0,
    };
    let _ = TLS_INFLIGHT.insert(&id, &entry, 0);
    Ok(())
}

/// [`InFlight::kind`] of a handshake call (no plaintext; only binds the socket). Never in a
/// record.
const KIND_HANDSHAKE: u8 = 0xff;

/// `SSL_do_handshake`, `SSL_accept`, `SSL_connect`: the socket I/O of the handshake binds the
/// `SSL *` to its socket before any plaintext, so the first read, which OpenSSL may serve
/// from bytes the handshake already received, has its connection.
#[uprobe]
pub fn apitap_ssl_handshake_entry(ctx: ProbeContext) -> u32 {
    let _ = try_handshake_entry(&ctx);
    0
}

#[inline(always)]
fn try_handshake_entry(ctx: &ProbeContext) -> Result<(), Skip> {
    if !selected() {
        return Err(Skip);
    }
    let id = bpf_get_current_pid_tgid();
    // SSL_connect and SSL_accept call SSL_do_handshake: keep the outer entry.
    // SAFETY: plain lookup.
    if unsafe { TLS_INFLIGHT.get(&id) }.is_some_and(|e| e.kind == KIND_HANDSHAKE) {
        return Ok(());
    }
    let ssl: u64 = ctx.arg(0).ok_or(Skip)?;
    let key = ConnKey {
        ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain lookup, the value is copied.
    let sock = unsafe { TLS_CONNS.get(&key) }.map_or(0, |c| c.sock);
    let entry = notice(ssl, sock, KIND_HANDSHAKE, 0);
    let _ = TLS_INFLIGHT.insert(&id, &entry, 0);
    Ok(())
}

#[uretprobe]
pub fn apitap_ssl_handshake_return(_ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: plain lookup.
    if unsafe { TLS_INFLIGHT.get(&id) }.is_some_and(|e| e.kind == KIND_HANDSHAKE) {
        let _ = TLS_INFLIGHT.remove(&id);
    }
    0
}

/// The socket I/O inside a traced call names the connection.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn apitap_sock_send(ctx: RawTracePointContext) -> i32 {
    bind_socket(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn apitap_sock_recv(ctx: RawTracePointContext) -> i32 {
    bind_socket(&ctx);
    0
}

#[inline(always)]
fn bind_socket(ctx: &RawTracePointContext) {
    let id = bpf_get_current_pid_tgid();
    let Some(entry) = TLS_INFLIGHT.get_ptr_mut(&id) else {
        return;
    };
    // TP_PROTO(struct sock *sk, int ret, int flags): the pointer is only used as a key.
    let sk: u64 = ctx.arg(0);
    // SAFETY: map value of this thread's entry; only this thread touches it.
    let entry = unsafe { &mut *entry };
    if entry.sock == sk {
        return;
    }
    entry.sock = sk;
    let key = ConnKey {
        ssl: entry.ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    bind_conn(&key, sk);
}

/// Records that the TLS connection `key` uses the socket `sk`.
#[inline(always)]
fn bind_conn(key: &ConnKey, sk: u64) {
    match TLS_CONNS.get_ptr_mut(key) {
        // SAFETY: map value; a TLS connection is used by one thread at a time.
        Some(c) => unsafe { (*c).sock = sk },
        None => {
            let _ = TLS_CONNS.insert(
                key,
                &ConnState {
                    sock: sk,
                    offsets: [0; 2],
                },
                0,
            );
        }
    }
}

#[uretprobe]
pub fn apitap_ssl_read_return(ctx: RetProbeContext) -> u32 {
    returned(&ctx);
    0
}

#[uretprobe]
pub fn apitap_ssl_write_return(ctx: RetProbeContext) -> u32 {
    returned(&ctx);
    0
}

/// Tail-called by the return probes while a long call has bytes left to copy.
#[uretprobe]
pub fn apitap_tls_continue(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if let Err(loss) = copy_out(&ctx, id) {
        bump(loss.counter(), 1);
        let _ = TLS_INFLIGHT.remove(&id);
    }
    0
}

#[inline(always)]
fn returned(ctx: &RetProbeContext) {
    let id = bpf_get_current_pid_tgid();
    match start_copy(ctx, id) {
        Ok(()) => {}
        Err(Ok(Skip)) => {
            let _ = TLS_INFLIGHT.remove(&id);
        }
        Err(Err(loss)) => {
            bump(loss.counter(), 1);
            let _ = TLS_INFLIGHT.remove(&id);
        }
    }
}

/// Reads the call's result and starts copying its plaintext.
#[inline(always)]
fn start_copy(ctx: &RetProbeContext, id: u64) -> Result<(), Result<Skip, Loss>> {
    let Some(entry) = TLS_INFLIGHT.get_ptr_mut(&id) else {
        // Not selected (the entry probe kept nothing), or the in-flight map evicted it.
        return Err(if selected() {
            Err(Loss::NoEntry)
        } else {
            Ok(Skip)
        });
    };
    // SAFETY: this thread's own entry.
    let entry = unsafe { &mut *entry };
    // OpenSSL's four functions return `int`: bytes (plain forms) or 1 on success (`_ex`);
    // GnuTLS's record functions `ssize_t` bytes.
    let rv: i64 = if entry.ret == RET_SSIZE {
        ctx.ret::<i64>()
    } else {
        ctx.ret::<i32>() as i64
    };
    let len: u64 = if entry.len_ptr != 0 {
        if rv != 1 {
            return Err(Ok(Skip));
        }
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes of the traced process's memory into a local.
        let rc = unsafe {
            bpf_probe_read_user(
                (&mut n as *mut u64).cast(),
                8,
                entry.len_ptr as *const core::ffi::c_void,
            )
        };
        if rc < 0 {
            return Err(Err(Loss::ReadFailed));
        }
        n
    } else if rv > 0 {
        rv as u64
    } else {
        return Err(Ok(Skip));
    };
    if len == 0 || !port_selected(entry.sock) {
        return Err(Ok(Skip));
    }
    bump(TlsCounter::Calls, 1);
    if entry.sock == 0 {
        bump(TlsCounter::NoSocket, 1);
    }
    let len = if len > u32::MAX as u64 {
        u32::MAX
    } else {
        len as u32
    };
    let key = ConnKey {
        ssl: entry.ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    let dir = if entry.kind == TlsKind::Write as u8 {
        1
    } else {
        0
    };
    // The stream offset of this call, then advanced past it (even if copying fails below:
    // the agent then sees the loss as a gap).
    match TLS_CONNS.get_ptr_mut(&key) {
        Some(c) => {
            // SAFETY: map value; a TLS connection is used by one thread at a time.
            let c = unsafe { &mut *c };
            entry.stream_offset = c.offsets[dir];
            c.offsets[dir] += len as u64;
        }
        None => {
            let mut offsets = [0u64; 2];
            offsets[dir] = len as u64;
            let _ = TLS_CONNS.insert(
                &key,
                &ConnState {
                    sock: entry.sock,
                    offsets,
                },
                0,
            );
        }
    }
    entry.len = len;
    entry.done = 0;
    entry.runs = 0;
    copy_out(ctx, id).map_err(Err)
}

/// Copies up to [`TLS_CHUNKS_PER_RUN`] chunks of the call's plaintext into the ring, then
/// tail-calls itself for the rest. Removes the in-flight entry when done.
#[inline(always)]
fn copy_out(ctx: &RetProbeContext, id: u64) -> Result<(), Loss> {
    let Some(entry) = TLS_INFLIGHT.get_ptr_mut(&id) else {
        return Err(Loss::NoEntry);
    };
    // SAFETY: this thread's own entry.
    let entry = unsafe { &mut *entry };
    let wakeup_bytes = TLS_CONFIG.get(0).map_or(0, |c| c.wakeup_bytes);
    let mut hdr = header(entry, id);
    for _ in 0..TLS_CHUNKS_PER_RUN {
        if entry.done >= entry.len {
            break;
        }
        let left = entry.len - entry.done;
        let n = if left > TLS_CHUNK_BYTES as u32 {
            TLS_CHUNK_BYTES as u32
        } else {
            left
        };
        hdr.chunk_offset = entry.done;
        hdr.chunk_len = n;
        let src = entry.buf + entry.done as u64;
        if n <= TLS_SMALL_CHUNK_BYTES as u32 {
            write_chunk::<TlsSmallRecord>(&hdr, src, n, wakeup_bytes)?;
        } else {
            write_chunk::<TlsRecord>(&hdr, src, n, wakeup_bytes)?;
        }
        bump(TlsCounter::Records, 1);
        bump(TlsCounter::Bytes, n as u64);
        entry.done += n;
    }
    if entry.done < entry.len {
        entry.runs += 1;
        if entry.runs >= TLS_RUNS_PER_CALL {
            bump(TlsCounter::TooLong, 1);
        } else {
            // SAFETY: tail call into the continuation with the same context type; on
            // success control does not come back.
            unsafe { TLS_TAIL.tail_call(ctx, 0) };
            bump(TlsCounter::TailCallFailed, 1);
        }
    }
    let _ = TLS_INFLIGHT.remove(&id);
    Ok(())
}

/// Returns `x` unchanged through a volatile stack slot, so that bounds checks written after it
/// survive optimisation and reach the verifier.
#[inline(always)]
fn opaque(x: u32) -> u32 {
    let slot = x;
    // SAFETY: reading a live, initialised local.
    unsafe { core::ptr::read_volatile(&slot) }
}

/// A TLS ring record type: a [`TlsHeader`] followed by `CAP` bytes of plaintext (`repr(C)`,
/// so the data starts at [`TLS_HEADER_BYTES`]).
trait ChunkRecord: 'static {
    const CAP: usize;
}

impl ChunkRecord for TlsSmallRecord {
    const CAP: usize = TLS_SMALL_CHUNK_BYTES;
}

impl ChunkRecord for TlsRecord {
    const CAP: usize = TLS_CHUNK_BYTES;
}

/// Copies `n` bytes of plaintext at `src` into a new ring record of type `R`.
#[inline(always)]
fn write_chunk<R: ChunkRecord>(
    hdr: &TlsHeader,
    src: u64,
    n: u32,
    wakeup_bytes: u32,
) -> Result<(), Loss> {
    let n = opaque(n);
    if n > R::CAP as u32 {
        return Err(Loss::ReadFailed);
    }
    let Some(mut rec) = TLS_EVENTS.reserve::<R>(0) else {
        return Err(Loss::RingFull);
    };
    let p = rec.as_mut_ptr().cast::<u8>();
    // SAFETY: `p` is a reserved record of `size_of::<R>()` = header + `R::CAP` bytes; the
    // header is at offset 0 and `n` is bounded by the data array after it.
    unsafe {
        core::ptr::write_unaligned(p.cast::<TlsHeader>(), *hdr);
        if bpf_probe_read_user(
            p.add(TLS_HEADER_BYTES).cast(),
            n,
            src as *const core::ffi::c_void,
        ) < 0
        {
            rec.discard(0);
            return Err(Loss::ReadFailed);
        }
    }
    // A wake-up per record would cost the application's thread an inter-processor interrupt
    // per TLS call (8 % of nginx's time under `cargo xtask bench tls` before batching).
    rec.submit(wakeup_flags(
        &TLS_EVENTS,
        wakeup_bytes,
        core::mem::size_of::<R>(),
    ));
    Ok(())
}

/// The record header of the call in `entry`, with the socket's 4-tuple when it is known.
#[inline(always)]
fn header(entry: &InFlight, id: u64) -> TlsHeader {
    // SAFETY: helpers without pointer arguments.
    let (ts_ns, cgroup_id, uid) = unsafe {
        (
            bpf_ktime_get_ns(),
            bpf_get_current_cgroup_id(),
            bpf_get_current_uid_gid() as u32,
        )
    };
    let mut h = TlsHeader {
        ts_ns,
        ssl: entry.ssl,
        sock: entry.sock,
        cgroup_id,
        stream_offset: entry.stream_offset,
        call_len: entry.len,
        chunk_offset: 0,
        chunk_len: 0,
        tgid: (id >> 32) as u32,
        tid: id as u32,
        uid,
        laddr: [0; 16],
        raddr: [0; 16],
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        lport: 0,
        rport: 0,
        kind: entry.kind,
        family: 0,
        role: role::UNKNOWN,
        library: entry.library,
        _pad: [0; 8],
    };
    if entry.sock != 0 {
        // SAFETY: plain lookup, the value is copied.
        if let Some(s) = unsafe { TLS_SOCKETS.get(&entry.sock) } {
            h.laddr = s.laddr;
            h.raddr = s.raddr;
            h.lport = s.lport;
            h.rport = s.rport;
            h.family = s.family;
            h.role = s.role;
        }
    }
    h
}

/// `SSL_free(SSL *)`: the connection is over; its state is forgotten and its end reported.
#[uprobe]
pub fn apitap_ssl_free(ctx: ProbeContext) -> u32 {
    let _ = try_ssl_free(&ctx);
    0
}

#[inline(always)]
fn try_ssl_free(ctx: &ProbeContext) -> Result<(), Skip> {
    if !selected() {
        return Err(Skip);
    }
    let ssl: u64 = ctx.arg(0).ok_or(Skip)?;
    // SAFETY: the cookie helper takes the program's own context.
    let library = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8;
    report_close(ssl, library)
}

/// The end of the TLS connection `ssl` of the current process: its state is forgotten and a
/// [`TlsKind::Close`] record written (nothing if it never carried plaintext).
#[inline(always)]
fn report_close(ssl: u64, library: u8) -> Result<(), Skip> {
    let id = bpf_get_current_pid_tgid();
    let key = ConnKey {
        ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain lookup, the value is copied.
    let Some(state) = (unsafe { TLS_CONNS.get(&key) }).copied() else {
        return Err(Skip); // never carried plaintext
    };
    let _ = TLS_CONNS.remove(&key);
    let entry = notice(ssl, state.sock, TlsKind::Close as u8, library);
    let hdr = header(&entry, id);
    match TLS_EVENTS.output::<TlsHeader>(hdr, 0) {
        Ok(()) => bump(TlsCounter::Closes, 1),
        Err(_) => bump(TlsCounter::RingFull, 1),
    }
    Ok(())
}

/// `SSL_CTRL_SET_TLSEXT_HOSTNAME` (OpenSSL's `tls1.h`).
const SSL_CTRL_SET_TLSEXT_HOSTNAME: u64 = 55;

/// `SSL_ctrl(SSL *s, int cmd, long larg, void *parg)`: with
/// `SSL_CTRL_SET_TLSEXT_HOSTNAME`, `parg` is the server name the client will send.
#[uprobe]
pub fn apitap_ssl_ctrl_entry(ctx: ProbeContext) -> u32 {
    let cmd: u64 = ctx.arg(1).unwrap_or(0);
    if cmd & 0xffff_ffff == SSL_CTRL_SET_TLSEXT_HOSTNAME
        && let (Some(ssl), Some(name)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(3))
    {
        report_sni(ssl, name, SNI_BYTES as u32);
    }
    0
}

/// BoringSSL's `SSL_set_tlsext_host_name(SSL *ssl, const char *name)`.
#[uprobe]
pub fn apitap_ssl_set_host_entry(ctx: ProbeContext) -> u32 {
    if let (Some(ssl), Some(name)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        report_sni(ssl, name, SNI_BYTES as u32);
    }
    0
}

/// `gnutls_server_name_set(gnutls_session_t, gnutls_server_name_type_t, const void *name,
/// size_t name_length)`: the name is not NUL-terminated.
#[uprobe]
pub fn apitap_gnutls_set_name_entry(ctx: ProbeContext) -> u32 {
    if let (Some(session), Some(name), Some(len)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(2), ctx.arg::<u64>(3))
    {
        let len = if len >= SNI_BYTES as u64 {
            SNI_BYTES as u32 - 1
        } else {
            len as u32
        };
        report_sni(session, name, len + 1);
    }
    0
}

/// `SSL_get_servername(const SSL *s, const int type)` → `const char *`.
#[uprobe]
pub fn apitap_ssl_get_servername_entry(ctx: ProbeContext) -> u32 {
    if selected()
        && let Some(ssl) = ctx.arg::<u64>(0)
    {
        let _ = SNI_INFLIGHT.insert(&bpf_get_current_pid_tgid(), &ssl, 0);
    }
    0
}

#[uretprobe]
pub fn apitap_ssl_get_servername_return(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: plain lookup, the value is copied.
    let Some(ssl) = (unsafe { SNI_INFLIGHT.get(&id) }).copied() else {
        return 0;
    };
    let _ = SNI_INFLIGHT.remove(&id);
    let name: u64 = ctx.ret::<u64>();
    if name != 0 {
        report_sni(ssl, name, SNI_BYTES as u32);
    }
    0
}

/// Writes a [`TlsKind::Sni`] record for `ssl` with the string at `name` (NUL-terminated, or
/// cut at `max - 1` bytes).
#[inline(always)]
fn report_sni(ssl: u64, name: u64, max: u32) {
    if !selected() {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let key = ConnKey {
        ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain lookup, the value is copied.
    let sock = unsafe { TLS_CONNS.get(&key) }.map_or(0, |c| c.sock);
    let entry = notice(ssl, sock, TlsKind::Sni as u8, 0);
    let mut hdr = header(&entry, id);
    let Some(mut rec) = TLS_EVENTS.reserve::<TlsSmallRecord>(0) else {
        bump(TlsCounter::RingFull, 1);
        return;
    };
    let p = rec.as_mut_ptr();
    let mut m = opaque(max) as usize;
    if m > SNI_BYTES {
        m = SNI_BYTES;
    }
    // SAFETY: `p` is a reserved record whose data array (TLS_SMALL_CHUNK_BYTES) holds the
    // `m` ≤ SNI_BYTES bytes the helper may write, NUL included.
    let n = unsafe {
        let data = &mut (*p).data;
        let dst = &mut data[..m];
        aya_ebpf::helpers::bpf_probe_read_user_str_bytes(name as *const u8, dst)
            .map_or(0, |s| s.len())
    };
    if n == 0 {
        rec.discard(0);
        return;
    }
    hdr.call_len = n as u32;
    hdr.chunk_len = n as u32;
    // SAFETY: as above.
    unsafe { (*p).header = hdr };
    rec.submit(0);
}

/// Byte offsets of Go's runtime structures on the way from a `*tls.Conn` to its file
/// descriptor, unchanged from Go 1.12 to 1.23: `tls.Conn.conn` is the first field (a
/// `net.Conn` interface: type word, then data word); the data word points to a `net.TCPConn`
/// (or `UnixConn`), whose first word is its `*netFD`; `netFD.pfd` is a `poll.FD`, whose
/// `Sysfd` follows the 16-byte `fdMutex`.
const GO_TLS_CONN_DATA: u64 = 8;
const GO_NETFD_SYSFD: u64 = 16;
/// Largest descriptor followed (the kernel's own limit, `NR_OPEN`, is 2^20).
const MAX_FD: u64 = 1 << 20;

/// Reads a `T` from the traced process's memory at `addr`.
#[inline(always)]
fn uread<T>(addr: u64) -> Option<T> {
    // SAFETY: the helper checks the address; a bad one fails, it never faults.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const T) }.ok()
}

/// The kernel socket (`struct sock *`) behind descriptor `fd` of the current process, via
/// `current->files->fdt->fd[fd]->private_data->sk` (offsets from the kernel's BTF); 0 if any
/// step fails or `fd` is out of the table.
#[inline(always)]
fn sock_of_fd(cfg: &TlsConfig, fd: u64) -> u64 {
    // SAFETY: no arguments; the current task's address, only read through the helper.
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    let walk = || -> Result<u64, i32> {
        let files: u64 = kread(task, cfg.task_files)?;
        let fdt: u64 = kread(files, cfg.files_fdt)?;
        let max: u32 = kread(fdt, cfg.fdtable_max_fds)?;
        if fd >= u64::from(max) || fd >= MAX_FD {
            return Err(-1);
        }
        let fds: u64 = kread(fdt, cfg.fdtable_fd)?;
        let file: u64 = kread(fds + fd * 8, 0)?;
        let socket: u64 = kread(file, cfg.file_private_data)?;
        kread(socket, cfg.socket_sk)
    };
    walk().unwrap_or(0)
}

/// The registers Go's ABIInternal passes in: (RAX, RBX, R14 = the goroutine).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_regs(ctx: &ProbeContext) -> (u64, u64, u64) {
    // SAFETY: `regs` is the probe's own `pt_regs` context, readable directly.
    unsafe { ((*ctx.regs).rax, (*ctx.regs).rbx, (*ctx.regs).r14) }
}

/// `crypto/tls.(*Conn).Read(c, b []byte) (int, error)`: RAX = c, RBX = b's data.
#[cfg(bpf_target_arch = "x86_64")]
#[uprobe]
pub fn apitap_go_read_entry(ctx: ProbeContext) -> u32 {
    let _ = go_enter(&ctx, TlsKind::Read);
    0
}

/// `crypto/tls.(*Conn).Write(c, b []byte) (int, error)`.
#[cfg(bpf_target_arch = "x86_64")]
#[uprobe]
pub fn apitap_go_write_entry(ctx: ProbeContext) -> u32 {
    let _ = go_enter(&ctx, TlsKind::Write);
    0
}

#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_enter(ctx: &ProbeContext, kind: TlsKind) -> Result<(), Skip> {
    if !selected() {
        return Err(Skip);
    }
    let cfg = TLS_CONFIG.get(0).ok_or(Skip)?;
    let (conn, buf, g) = go_regs(ctx);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = ConnKey {
        ssl: conn,
        tgid,
        _pad: 0,
    };
    // The socket once per connection; the descriptor does not change while it is open.
    // SAFETY: plain lookup, the value is copied.
    let known = unsafe { TLS_CONNS.get(&key) }.map_or(0, |c| c.sock);
    let sock = if known != 0 {
        known
    } else {
        let fd = uread::<u64>(conn + GO_TLS_CONN_DATA)
            .and_then(uread::<u64>)
            .and_then(|netfd| uread::<u64>(netfd + GO_NETFD_SYSFD))
            .unwrap_or(u64::MAX);
        let sk = sock_of_fd(cfg, fd);
        if sk != 0 {
            bind_conn(&key, sk);
        }
        sk
    };
    let entry = InFlight {
        ssl: conn,
        buf,
        len_ptr: 0,
        sock,
        stream_offset: 0,
        len: 0,
        done: 0,
        runs: 0,
        kind: kind as u8,
        // SAFETY: the cookie helper takes the program's own context.
        library: unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8,
        // `int` is 64 bits in Go.
        ret: RET_SSIZE,
        _pad: 0,
    };
    // The stack check at the function's start may grow the stack and run the entry again
    // with the same arguments: the second entry overwrites the first.
    let _ = GO_INFLIGHT.insert(
        &ConnKey {
            ssl: g,
            tgid,
            _pad: 0,
        },
        &entry,
        0,
    );
    Ok(())
}

/// At a `RET` of `(*Conn).Read`/`Write`: the goroutine's call ends here (RAX = bytes). Its
/// state moves to this thread's in-flight slot and the plaintext is copied as for the C
/// libraries.
#[cfg(bpf_target_arch = "x86_64")]
#[uprobe]
pub fn apitap_go_return(ctx: ProbeContext) -> u32 {
    if !selected() {
        return 0;
    }
    let (_, _, g) = go_regs(&ctx);
    let id = bpf_get_current_pid_tgid();
    let key = ConnKey {
        ssl: g,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain lookup, the value is copied.
    let Some(entry) = (unsafe { GO_INFLIGHT.get(&key) }).copied() else {
        bump(TlsCounter::NoEntry, 1);
        return 0;
    };
    let _ = GO_INFLIGHT.remove(&key);
    if TLS_INFLIGHT.insert(&id, &entry, 0).is_err() {
        bump(TlsCounter::NoEntry, 1);
        return 0;
    }
    returned(&RetProbeContext::new(ctx.as_ptr()));
    0
}

/// `crypto/tls.(*Conn).Close(c)`: RAX = c.
#[cfg(bpf_target_arch = "x86_64")]
#[uprobe]
pub fn apitap_go_close(ctx: ProbeContext) -> u32 {
    if selected() {
        let (conn, _, _) = go_regs(&ctx);
        // SAFETY: the cookie helper takes the program's own context.
        let library = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8;
        let _ = report_close(conn, library);
    }
    0
}

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

/// Reads a `T` at `base + offset` of kernel memory (offsets from the kernel's BTF).
#[inline(always)]
fn kread<T>(base: u64, offset: u32) -> Result<T, i32> {
    // SAFETY: the helper checks the address; a bad one fails, it never faults.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }
}

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`: remembers the
/// 4-tuple and role of each TCP socket when it is established, forgets it when it closes.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn apitap_sock_state(ctx: RawTracePointContext) -> i32 {
    let _ = try_sock_state(&ctx);
    0
}

#[inline(always)]
fn try_sock_state(ctx: &RawTracePointContext) -> Result<(), i32> {
    let Some(cfg) = TLS_CONFIG.get(0) else {
        return Ok(());
    };
    if cfg.flags & tls_flags::ENABLED == 0 {
        return Ok(());
    }
    let sk: u64 = ctx.arg(0);
    let old = ctx.arg::<u64>(1) as i32;
    let new = ctx.arg::<u64>(2) as i32;
    if new == TCP_CLOSE {
        let _ = TLS_SOCKETS.remove(&sk);
        return Ok(());
    }
    if new != TCP_ESTABLISHED {
        return Ok(());
    }
    let role = match old {
        TCP_SYN_SENT => role::CLIENT,
        TCP_SYN_RECV => role::SERVER,
        _ => return Ok(()),
    };
    if kread::<u16>(sk, cfg.sk_protocol)? != IPPROTO_TCP {
        return Ok(());
    }
    let mut s = TlsSocket {
        lport: kread(sk, cfg.sk_num)?,
        rport: u16::from_be(kread(sk, cfg.sk_dport)?),
        role,
        ..TlsSocket::default()
    };
    match kread::<u16>(sk, cfg.sk_family)? {
        AF_INET => {
            let l: [u8; 4] = kread(sk, cfg.sk_rcv_saddr)?;
            let r: [u8; 4] = kread(sk, cfg.sk_daddr)?;
            s.laddr[..4].copy_from_slice(&l);
            s.raddr[..4].copy_from_slice(&r);
            s.family = FAMILY_IPV4;
        }
        AF_INET6 => {
            s.laddr = kread(sk, cfg.sk_v6_rcv_saddr)?;
            s.raddr = kread(sk, cfg.sk_v6_daddr)?;
            s.family = FAMILY_IPV6;
        }
        _ => return Ok(()),
    }
    let _ = TLS_SOCKETS.insert(&sk, &s, 0);
    Ok(())
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
/// the executable of a selected process (its new name is already the comm here).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn apitap_process_exec(ctx: RawTracePointContext) -> i32 {
    // Only reading the kernel's exec arguments fails here: the notice is lost, counted.
    if try_process_exec(&ctx).is_err() {
        bump(TlsCounter::ExecsLost, 1);
    }
    0
}

#[inline(always)]
fn try_process_exec(ctx: &RawTracePointContext) -> Result<(), i32> {
    let Some(flags) = enabled() else {
        return Ok(());
    };
    let Some(cfg) = TLS_CONFIG.get(0) else {
        return Ok(());
    };
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let by_comm = flags & tls_flags::ALL_PROCESSES != 0
        || bpf_get_current_comm().is_ok_and(|c| comm_selected(&c));
    if !by_comm && flags & tls_flags::BY_EXECUTABLE == 0 {
        // An entry inherited at fork belongs to the executable the process just left.
        let _ = TLS_EXES.remove(&tgid);
        return Ok(());
    }
    let bprm: u64 = ctx.arg(2);
    let filename: u64 = kread(bprm, cfg.bprm_filename)?;
    let mut exe = TlsExe {
        path: [0; EXE_BYTES],
    };
    // SAFETY: the helper checks the address and bounds the copy by the buffer.
    unsafe { bpf_probe_read_kernel_str_bytes(filename as *const u8, &mut exe.path)? };
    if !by_comm && !exe_selected(&exe.path) {
        let _ = TLS_EXES.remove(&tgid);
        return Ok(());
    }
    let _ = TLS_EXES.insert(&tgid, &exe, 0);
    // The executed file's identity, which the agent compares with the files it probed.
    let file: u64 = kread(bprm, cfg.bprm_file)?;
    let inode: u64 = kread(file, cfg.file_inode)?;
    let ino: u64 = kread(inode, cfg.inode_ino)?;
    let sb: u64 = kread(inode, cfg.inode_sb)?;
    let dev: u32 = kread(sb, cfg.sb_dev)?;
    report_exec(&exe, id, ino, dev);
    Ok(())
}

/// Writes a [`TlsKind::Exec`] record with the executed path (R-CAP-4: the agent checks the
/// file's TLS library); counted, and counted when the ring is full.
#[inline(always)]
fn report_exec(exe: &TlsExe, id: u64, ino: u64, dev: u32) {
    let entry = notice(0, 0, TlsKind::Exec as u8, 0);
    let mut hdr = header(&entry, id);
    hdr.ssl = ino;
    hdr.sock = u64::from(dev);
    let mut n = 0u32;
    while (n as usize) < EXE_BYTES && exe.path[n as usize] != 0 {
        n += 1;
    }
    hdr.call_len = n;
    hdr.chunk_len = n;
    let Some(mut rec) = TLS_EVENTS.reserve::<TlsSmallRecord>(0) else {
        bump(TlsCounter::ExecsLost, 1);
        return;
    };
    let p = rec.as_mut_ptr();
    // SAFETY: `p` is a reserved record; the path (EXE_BYTES) fits its data array.
    unsafe {
        (*p).header = hdr;
        let rc = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (*p).data.as_mut_ptr().cast(),
            EXE_BYTES as u32,
            exe.path.as_ptr().cast(),
        );
        if rc < 0 {
            rec.discard(0);
            bump(TlsCounter::ExecsLost, 1);
            return;
        }
    }
    rec.submit(0);
    bump(TlsCounter::Execs, 1);
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`: a new
/// process inherits its parent's executable (a new thread, same process, is skipped).
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn apitap_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_process_fork(&ctx);
    0
}

#[inline(always)]
fn try_process_fork(ctx: &RawTracePointContext) -> Result<(), i32> {
    let Some(cfg) = TLS_CONFIG.get(0) else {
        return Ok(());
    };
    if cfg.flags & tls_flags::ENABLED == 0 {
        return Ok(());
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: plain lookup, the value is copied.
    let Some(exe) = (unsafe { TLS_EXES.get(&parent) }).copied() else {
        return Ok(());
    };
    let child: u64 = ctx.arg(1);
    let child_tgid = kread::<i32>(child, cfg.task_tgid)? as u32;
    if child_tgid != parent {
        let _ = TLS_EXES.insert(&child_tgid, &exe, 0);
    }
    Ok(())
}

const _: () = assert!(EXE_BYTES <= TLS_SMALL_CHUNK_BYTES);
const _: () = assert!(SNI_BYTES <= TLS_SMALL_CHUNK_BYTES);

/// Size check of the header as written by `output` above.
const _: () = assert!(core::mem::size_of::<TlsHeader>() == TLS_HEADER_BYTES);
