# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Native RTP batch I/O for the media clock: receive, jitter-buffer, play out, packetize and send.

Theory of operation
-------------------
``RtpCore`` holds every media *slot* of the process in one C array: RTP legs (a socket pair, a jitter
buffer, RFC 4733 state) and local players (a PCM buffer). Python calls it twice per 20 ms tick and never
per packet or per leg:

``receive(now)``
    ``epoll_wait`` (timeout 0) over all RTP and RTCP sockets, then ``recvmmsg`` on each ready socket
    until it is drained. Each datagram is parsed here (RFC 3550 §5.1), checked against the latched source
    (symmetric RTP), accounted (SSRC change, extended sequence numbers), routed by payload type to the
    RFC 4733 receiver or to the jitter buffer. Then one frame per slot is played out into the shared
    numpy arrays the mixing kernel reads (``codes``/``in_codec`` for received G.711, ``pcm_in`` for
    concealment, players and tapped slots), RTP timeouts are checked and ``out_codec`` says which rows the
    kernel must encode.
``transmit(now)``
    For every sending leg: an RTP header (RFC 3550 §5.1) in front of the row the kernel encoded, or an
    RFC 4733 telephone-event packet while a digit is being sent, and one ``send``/``sendto`` on the
    leg's own socket: symmetric RTP needs each leg's own source port, and each socket carries one packet
    per tick, so ``sendmmsg`` (one socket, many messages) would not batch anything here. With
    ``connect_sockets`` a leg's socket is connected to its fixed peer and ``send`` skips the per-packet
    route lookup (about half the cost of ``sendto`` on Linux).

The jitter buffer is a port of ``mediagw.media.jitter.JitterBuffer`` (the reference, see its module
docstring for the algorithm): same timeline, same adaptation, same concealment gains, so that the native
engine and ``mediagw.media.engine.ReferenceEngine`` give identical bytes for identical input. The arrival
time of a packet is the last tick played (packets are read in a batch at the start of a tick).

RFC 4733 receive follows ``mediagw.media.dtmf.DtmfReceiver``: one event per (SSRC, timestamp), reported
once, at its first end packet, when another event starts while it is open, or 0.5 s after its last packet.
RTCP sockets are drained and counted here; reports are built in Python at their own low rate.

Events (DTMF received, RTP timeout, SSRC change, player finished) are appended to a Python list as plain
tuples; ``mediagw.media.engine`` turns them into dataclasses. They are rare; packets never touch Python.
"""
from libc.stdint cimport int16_t, uint8_t, int32_t, uint16_t, uint32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.math cimport floor, ceil, fabs
from libc.errno cimport errno, EINTR
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from g711c cimport ulaw_to_linear, alaw_to_linear

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int sockfd, mmsghdr* msgvec, unsigned int vlen, int flags, void* timeout)
    ssize_t sendto(int sockfd, const void* buf, size_t len, int flags, const sockaddr* dest_addr,
                   socklen_t addrlen)
    ssize_t send(int sockfd, const void* buf, size_t len, int flags)
    int connect(int sockfd, const sockaddr* addr, socklen_t addrlen)
    int AF_UNSPEC
    int MSG_DONTWAIT
    int MSG_TRUNC
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct in6_addr:
        pass
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLLIN
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    int EPOLL_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int close(int fd)


# ---- constants ----------------------------------------------------------------------------------------

DEF FRAME = 160             # samples (and G.711 octets) per 20 ms frame, RFC 3551 §4.5.14
DEF JB_CAP = 64             # jitter buffer ring; holds resync_frames + max_depth + 3 frames
DEF JB_MASK = 63
DEF RECENT = 64             # played indices remembered for duplicate detection (reference: deque(64))
cdef int64_t NONE_TICK = -(1 << 62)  # stands for the reference's None tick
DEF BATCH = 32              # datagrams per recvmmsg call
DEF PKT_MAX = 2048          # receive buffer per datagram; longer ones are truncated and dropped
DEF EPOLL_BATCH = 1024
DEF DTMF_QUEUE = 32
DEF DTMF_FINISHED = 8       # finished events remembered against retransmitted end packets
DEF DTMF_VOLUME = 10        # -10 dBm0, RFC 4733 §2.3.4
DEF DTMF_END_COPIES = 3     # the final packet is sent three times, RFC 4733 §2.5.1.4
DEF DTMF_OPEN_TIMEOUT = 0.5 # seconds; an event whose end packets never came is reported after this

CODEC_PCMU = 0              # mirrors mediagw._native.mix / mediagw.media.mix
CODEC_PCMA = 1
CODEC_PCM = 2
CODEC_NONE = 3
cdef enum:
    C_PCMU = 0
    C_PCMA = 1
    C_PCM = 2
    C_NONE = 3

cdef enum SlotKind:
    KIND_FREE = 0
    KIND_LEG = 1
    KIND_PLAYER = 2

cdef enum FrameKind:
    F_SILENCE = 0
    F_AUDIO = 1
    F_CONCEAL = 2

EVENT_DTMF = 1              # (EVENT_DTMF, slot, event code 0..15, duration in timestamp units)
EVENT_TIMEOUT = 2           # (EVENT_TIMEOUT, slot, idle seconds, 0)
EVENT_SSRC = 3              # (EVENT_SSRC, slot, old ssrc, new ssrc)
EVENT_PLAYER_DONE = 4       # (EVENT_PLAYER_DONE, slot, 0, 0)

cdef int16_t ULAW_DECODE[256]
cdef int16_t ALAW_DECODE[256]

cdef void _build_tables() noexcept nogil:
    cdef int i
    for i in range(256):
        ULAW_DECODE[i] = ulaw_to_linear(<uint8_t>i)
        ALAW_DECODE[i] = alaw_to_linear(<uint8_t>i)

_build_tables()


cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept nogil:
    """Python's ``a // b`` (rounds towards minus infinity) for b > 0."""
    cdef int64_t q = a / b
    if (a % b != 0) and (a < 0):
        q -= 1
    return q


cdef inline int32_t ts_diff(uint32_t a, uint32_t b) noexcept nogil:
    """Signed 32-bit RTP timestamp distance a - b (serial arithmetic)."""
    return <int32_t>(a - b)


cdef inline int32_t seq_diff(uint16_t a, uint16_t b) noexcept nogil:
    """Signed 16-bit sequence distance a - b (serial arithmetic, RFC 1982)."""
    return <int16_t>(<uint16_t>(a - b))


cdef inline double now_seconds() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


# ---- per-slot state -----------------------------------------------------------------------------------

ctypedef struct Jitter:
    # configuration (see mediagw.media.jitter.JitterBuffer)
    int min_depth, max_depth, conceal_frames, shrink_after, resync_frames
    # statistics (JitterStats)
    int64_t received, duplicates, late, lost, underruns, concealed, played, skipped, stretched, invalid
    int64_t resets
    int depth
    double jitter
    # state
    bint has_ssrc
    uint32_t ssrc
    int64_t tag[JB_CAP]
    uint8_t present[JB_CAP]
    uint8_t pt[JB_CAP]
    uint8_t data[JB_CAP][FRAME]
    int count
    int64_t recent[RECENT]       # ring of remembered (played or skipped) indices, oldest at recent_head
    int recent_head, recent_len
    bint anchored
    int64_t last_bump_tick       # NONE_TICK for None
    int64_t base_ts, ext_ts
    uint32_t last_ts
    int64_t offset, next_index, first_index
    double transit_floor, last_transit
    bint has_last_transit
    int target, calm_ticks
    int64_t last_tick
    bint has_last_tick
    int loss_run
    uint8_t last_good[FRAME]
    bint has_last_good
    int last_pt
    bint started


ctypedef struct Slot:
    int kind
    # -- leg ------------------------------------------------------------------------------------------
    int fd, rtcp_fd
    int family
    int payload_type            # 0 PCMU or 8 PCMA: what we send
    int te_pt                   # telephone-event payload type, -1 when not negotiated
    bint latch, latched, send, receive
    bint connected              # connect(2)ed to the remote: send() without an address, no route lookup
    bint has_remote
    sockaddr_storage remote
    socklen_t remote_len
    sockaddr_storage signalled  # the address SDP gave (remote is the latched source once latched)
    socklen_t signalled_len
    bint has_signalled
    sockaddr_storage source     # the latched source
    socklen_t source_len
    # receive accounting (RFC 3550 §6.4.1 / A.3 figures)
    bint has_ssrc
    uint32_t ssrc
    uint16_t max_seq
    int64_t ext_max, base_ext, expected_prior_sources, received_prior_sources
    int64_t packets_received, octets_received, malformed, wrong_source, wrong_payload_type, rtcp_received
    double last_rx
    bint timed_out
    # RFC 4733 receiver
    bint dtmf_active            # an event is open (mediagw.media.dtmf.DtmfReceiver._open)
    uint32_t dtmf_ssrc, dtmf_ts
    int dtmf_event, dtmf_duration
    double dtmf_last_seen
    uint32_t dtmf_fin_ssrc[DTMF_FINISHED]   # (ssrc, timestamp) of the last finished events
    uint32_t dtmf_fin_ts[DTMF_FINISHED]
    int dtmf_fin_head, dtmf_fin_len
    # transmitter
    uint32_t tx_ssrc, tx_ts0
    uint16_t tx_seq
    int64_t tx_tick0
    bint tx_marker
    int64_t packets_sent, octets_sent, send_errors
    uint32_t last_tx_ts
    # RFC 4733 transmitter
    int dtmf_q_event[DTMF_QUEUE]
    int dtmf_q_duration[DTMF_QUEUE]
    int dtmf_q_head, dtmf_q_len
    bint dtmf_tx_active, dtmf_tx_first
    int dtmf_tx_event, dtmf_tx_total, dtmf_tx_elapsed, dtmf_tx_ends
    uint32_t dtmf_tx_ts
    # jitter buffer (legs only, allocated on add)
    Jitter* jb
    # -- player ---------------------------------------------------------------------------------------
    const int16_t* pcm
    Py_ssize_t pcm_len, pcm_pos
    bint loop, finished
    # -- both -----------------------------------------------------------------------------------------
    bint tap_in, tap_out


# ---- jitter buffer (port of mediagw.media.jitter.JitterBuffer) ----------------------------------------

cdef void jb_init(Jitter* jb, int min_depth, int max_depth) noexcept nogil:
    memset(jb, 0, sizeof(Jitter))
    jb.min_depth = min_depth
    jb.max_depth = max_depth
    jb.conceal_frames = 3
    jb.shrink_after = 250
    jb.resync_frames = 50
    jb.target = min_depth
    jb.depth = min_depth
    jb.anchored = True
    jb.last_bump_tick = NONE_TICK


cdef inline void jb_grow_target(Jitter* jb, int want) noexcept nogil:
    if want > jb.max_depth:
        want = jb.max_depth
    if want > jb.target:
        jb.target = want
        jb.calm_ticks = 0
    jb.depth = jb.target


cdef inline int jb_want(Jitter* jb) noexcept nogil:
    cdef int want = <int>ceil(3.0 * jb.jitter) + 1
    if want < jb.min_depth:
        want = jb.min_depth
    if want > jb.max_depth:
        want = jb.max_depth
    return want


cdef void jb_reset(Jitter* jb, uint32_t ssrc, uint32_t timestamp, double arrival) noexcept nogil:
    """Start a new timeline at this packet (first packet, new SSRC, timestamp jump)."""
    if jb.started:
        jb.resets += 1
    jb.has_ssrc = True
    jb.ssrc = ssrc
    memset(jb.present, 0, sizeof(jb.present))
    jb.count = 0
    jb.recent_len = 0
    jb.recent_head = 0
    jb.base_ts = timestamp
    jb.ext_ts = timestamp
    jb.last_ts = timestamp
    jb.transit_floor = arrival
    jb.has_last_transit = False
    jb.offset = <int64_t>floor(arrival) + jb.target
    jb.next_index = <int64_t>floor(arrival) + 1 - jb.offset
    jb.first_index = 0
    jb.started = True


cdef inline int64_t jb_index(Jitter* jb, uint32_t timestamp) noexcept nogil:
    jb.ext_ts += ts_diff(timestamp, jb.last_ts)
    jb.last_ts = timestamp
    return floordiv(jb.ext_ts - jb.base_ts + FRAME // 2, FRAME)


cdef inline bint jb_recent(Jitter* jb, int64_t index) noexcept nogil:
    cdef int k
    for k in range(jb.recent_len):
        if jb.recent[k] == index:
            return True
    return False


cdef inline void jb_remember(Jitter* jb, int64_t index) noexcept nogil:
    """Note a slot that was played or skipped (deque(maxlen=64) of the reference: the oldest goes)."""
    if jb.recent_len < RECENT:
        jb.recent[(jb.recent_head + jb.recent_len) % RECENT] = index
        jb.recent_len += 1
    else:
        jb.recent[jb.recent_head] = index
        jb.recent_head = (jb.recent_head + 1) % RECENT


cdef void jb_observe_transit(Jitter* jb, double transit) noexcept nogil:
    if jb.has_last_transit:
        jb.jitter += (fabs(transit - jb.last_transit) - jb.jitter) / 16.0
    jb.last_transit = transit
    jb.has_last_transit = True
    if transit < jb.transit_floor:
        jb.transit_floor = transit
    else:
        jb.transit_floor += (transit - jb.transit_floor) / 512.0
    jb_grow_target(jb, jb_want(jb))


cdef void jb_store(Jitter* jb, int64_t index, const uint8_t* payload, int pt, double arrival) noexcept nogil:
    cdef int i = <int>(index & JB_MASK)
    if (jb.present[i] and jb.tag[i] == index) or jb_recent(jb, index):
        jb.duplicates += 1
        return
    if index < jb.next_index:
        jb.late += 1
        if jb.last_bump_tick != (jb.last_tick if jb.has_last_tick else NONE_TICK):
            jb.last_bump_tick = jb.last_tick if jb.has_last_tick else NONE_TICK  # one frame per tick at most
            jb_grow_target(jb, jb.target + 1)
        return
    if not jb.present[i]:
        jb.count += 1
    else:
        jb.skipped += 1  # ring collision (cannot happen within resync_frames + max_depth < JB_CAP)
    jb.present[i] = 1
    jb.tag[i] = index
    jb.pt[i] = <uint8_t>pt
    memcpy(jb.data[i], payload, FRAME)
    jb.received += 1
    jb_observe_transit(jb, arrival - <double>index)


cdef void jb_put(Jitter* jb, uint32_t ssrc, uint32_t timestamp, int pt, const uint8_t* payload,
                 Py_ssize_t length) noexcept nogil:
    """``JitterBuffer.put(packet)`` with the arrival time defaulting to the last tick popped."""
    cdef double arrival = <double>(jb.last_tick if jb.has_last_tick else 0)
    cdef int64_t index, n, frames, dist
    if length == 0 or length % FRAME:
        jb.invalid += 1
        return
    if not jb.has_ssrc or ssrc != jb.ssrc or not jb.started:
        jb_reset(jb, ssrc, timestamp, arrival)
        jb.anchored = jb.has_last_tick
    index = jb_index(jb, timestamp)
    dist = index - jb.next_index
    if dist < 0:
        dist = -dist
    if dist > jb.resync_frames + jb.max_depth:
        jb_reset(jb, ssrc, timestamp, arrival)
        index = jb_index(jb, timestamp)
    frames = length // FRAME
    for n in range(frames):
        jb_store(jb, index + n, payload + n * FRAME, pt, arrival)


cdef int jb_conceal(Jitter* jb, bint count_loss, int* gain) noexcept nogil:
    if count_loss:
        jb.lost += 1
        if jb.count == 0:
            jb.underruns += 1
    jb.loss_run += 1
    if not jb.has_last_good or jb.loss_run > jb.conceal_frames:
        return F_SILENCE
    gain[0] = 4096 * (jb.conceal_frames + 1 - jb.loss_run) // (jb.conceal_frames + 1)
    jb.concealed += 1
    return F_CONCEAL


cdef void jb_adapt(Jitter* jb) noexcept nogil:
    cdef int want
    cdef int64_t desired
    jb.calm_ticks += 1
    if jb.calm_ticks >= jb.shrink_after and jb.target > jb.min_depth:
        want = jb_want(jb)
        if want < jb.target:
            jb.target -= 1
            jb.depth = jb.target
        jb.calm_ticks = 0
    desired = <int64_t>floor(jb.transit_floor) + jb.target
    if desired > jb.offset:
        jb.offset += 1
    elif desired < jb.offset:
        jb.offset -= 1


cdef int jb_pop(Jitter* jb, int64_t tick, const uint8_t** payload, int* pt, int* gain) noexcept nogil:
    """``JitterBuffer.pop(tick)``: F_AUDIO (payload/pt), F_CONCEAL (last good payload/pt, gain) or F_SILENCE."""
    cdef int64_t index, shift, k, tmp
    cdef int i, j, n
    cdef int64_t order[JB_CAP]
    jb.last_tick = tick
    jb.has_last_tick = True
    if not jb.started:
        return F_SILENCE
    if not jb.anchored:
        # packets came before the first pop with no arrival time: they arrived just before it
        shift = tick - 1
        jb.transit_floor += shift
        jb.offset += shift
        if jb.has_last_transit:
            jb.last_transit += shift
        jb.anchored = True
    jb_adapt(jb)
    index = tick - jb.offset
    if index < jb.next_index:
        jb.stretched += 1
        return jb_pop_conceal(jb, False, payload, pt, gain)
    if index > jb.next_index and jb.count > 0:
        n = 0
        for i in range(JB_CAP):
            if jb.present[i] and jb.tag[i] < index:
                k = jb.tag[i]
                j = n
                while j > 0 and order[j - 1] > k:  # insertion sort: skipped in ascending order
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = k
                n += 1
                jb.present[i] = 0
                jb.count -= 1
                jb.skipped += 1
        for j in range(n):
            jb_remember(jb, order[j])
    jb.next_index = index + 1
    i = <int>(index & JB_MASK)
    if jb.present[i] and jb.tag[i] == index:
        jb_remember(jb, index)
        jb.present[i] = 0
        jb.count -= 1
        jb.loss_run = 0
        memcpy(jb.last_good, jb.data[i], FRAME)
        jb.has_last_good = True
        jb.last_pt = jb.pt[i]
        jb.played += 1
        payload[0] = jb.last_good
        pt[0] = jb.last_pt
        gain[0] = 4096
        return F_AUDIO
    if index < jb.first_index:
        return F_SILENCE
    return jb_pop_conceal(jb, True, payload, pt, gain)


cdef inline int jb_pop_conceal(Jitter* jb, bint count_loss, const uint8_t** payload, int* pt,
                               int* gain) noexcept nogil:
    cdef int kind = jb_conceal(jb, count_loss, gain)
    if kind == F_CONCEAL:
        payload[0] = jb.last_good
        pt[0] = jb.last_pt
    return kind


# ---- the engine core ----------------------------------------------------------------------------------

cdef class RtpCore:
    """All RTP legs and players of the process; see the module docstring. Driven by mediagw.media.engine."""

    cdef Slot* slots
    cdef int max_slots
    cdef int n_high
    cdef int n_used
    cdef int n_legs
    cdef int epfd
    cdef int jitter_min, jitter_max
    cdef bint connect_sockets
    cdef double rtp_timeout
    cdef double now
    cdef int64_t tick_index
    cdef uint8_t[:, ::1] codes
    cdef uint8_t[::1] in_codec
    cdef int16_t[:, ::1] pcm_in
    cdef uint8_t[::1] out_codec
    cdef uint8_t[:, ::1] out_codes
    cdef int16_t[:, ::1] out_pcm
    cdef mmsghdr* msgs
    cdef iovec* iovs
    cdef uint8_t* bufs
    cdef sockaddr_storage* names
    cdef epoll_event* events
    cdef list _events
    cdef dict _players
    # figures
    cdef public int64_t ticks, packets_in, packets_out, octets_in, octets_out, rtcp_in, syscalls_rx
    cdef public int64_t syscalls_tx, send_errors
    cdef public double time_rx, time_playout, time_tx
    cdef public int64_t last_packets_in, last_packets_out

    def __cinit__(self, int max_slots, int jitter_min_frames, int jitter_max_frames, double rtp_timeout,
                  codes, in_codec, pcm_in, out_codec, out_codes, out_pcm, bint connect_sockets=False):
        cdef int i
        if max_slots <= 0:
            raise ValueError("max_slots must be positive")
        if not 1 <= jitter_min_frames <= jitter_max_frames <= JB_CAP - 50 - 4:
            raise ValueError(f"need 1 <= jitter_min_frames <= jitter_max_frames <= {JB_CAP - 54}")
        self.slots = <Slot*>calloc(max_slots, sizeof(Slot))
        self.msgs = <mmsghdr*>calloc(BATCH, sizeof(mmsghdr))
        self.iovs = <iovec*>calloc(BATCH, sizeof(iovec))
        self.bufs = <uint8_t*>malloc(BATCH * PKT_MAX)
        self.names = <sockaddr_storage*>calloc(BATCH, sizeof(sockaddr_storage))
        self.events = <epoll_event*>calloc(EPOLL_BATCH, sizeof(epoll_event))
        if not (self.slots and self.msgs and self.iovs and self.bufs and self.names and self.events):
            raise MemoryError()
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.max_slots = max_slots
        self.jitter_min = jitter_min_frames
        self.jitter_max = jitter_max_frames
        self.rtp_timeout = rtp_timeout
        self.connect_sockets = connect_sockets
        self.codes = codes
        self.in_codec = in_codec
        self.pcm_in = pcm_in
        self.out_codec = out_codec
        self.out_codes = out_codes
        self.out_pcm = out_pcm
        if (self.codes.shape[0] < max_slots or self.codes.shape[1] != FRAME or self.in_codec.shape[0] < max_slots
                or self.pcm_in.shape[0] < max_slots or self.pcm_in.shape[1] != FRAME
                or self.out_codec.shape[0] < max_slots or self.out_codes.shape[0] < max_slots
                or self.out_codes.shape[1] != FRAME or self.out_pcm.shape[0] < max_slots
                or self.out_pcm.shape[1] != FRAME):
            raise ValueError(f"shared arrays must hold {max_slots} slots of {FRAME} samples")
        for i in range(BATCH):
            self.iovs[i].iov_base = self.bufs + i * PKT_MAX
            self.iovs[i].iov_len = PKT_MAX
        self._events = []
        self._players = {}

    def __dealloc__(self):
        cdef int i
        if self.slots != NULL:
            for i in range(self.max_slots):
                if self.slots[i].jb != NULL:
                    free(self.slots[i].jb)
            free(self.slots)
        free(self.msgs)
        free(self.iovs)
        free(self.bufs)
        free(self.names)
        free(self.events)
        if self.epfd >= 0:
            close(self.epfd)

    # -- commands (Python, at signalling rate) ---------------------------------------------------------

    cdef int _alloc(self) except -1:
        cdef int i
        for i in range(self.max_slots):
            if self.slots[i].kind == KIND_FREE:
                memset(&self.slots[i], 0, sizeof(Slot))
                if i + 1 > self.n_high:
                    self.n_high = i + 1
                self.n_used += 1
                return i
        raise RuntimeError(f"all {self.max_slots} media slots are in use")

    cdef Slot* _slot(self, int slot, int kind) except NULL:
        if not 0 <= slot < self.max_slots or self.slots[slot].kind == KIND_FREE:
            raise KeyError(f"slot {slot} is not in use")
        if kind != KIND_FREE and self.slots[slot].kind != kind:
            raise ValueError(f"slot {slot} is not a {'leg' if kind == KIND_LEG else 'player'}")
        return &self.slots[slot]

    cdef int _set_remote(self, Slot* s, object remote) except -1:
        """Parse ``(host, port)`` for the leg's address family; ``s.remote`` changes only on success."""
        cdef sockaddr_storage parsed
        cdef sockaddr_in* a4 = <sockaddr_in*>&parsed
        cdef sockaddr_in6* a6 = <sockaddr_in6*>&parsed
        cdef socklen_t length
        cdef bytes host
        cdef int port
        if remote is None:
            s.has_remote = False
            return 0
        host = str(remote[0]).encode("ascii")
        port = int(remote[1])
        if not 0 < port < 65536:
            raise ValueError(f"remote port {port} is out of range")
        memset(&parsed, 0, sizeof(sockaddr_storage))
        if s.family == AF_INET:
            a4.sin_family = AF_INET
            a4.sin_port = htons(<uint16_t>port)
            if inet_pton(AF_INET, host, &a4.sin_addr) != 1:
                raise ValueError(f"remote host {remote[0]!r} is not an IPv4 address")
            length = sizeof(sockaddr_in)
        else:
            a6.sin6_family = AF_INET6
            a6.sin6_port = htons(<uint16_t>port)
            if inet_pton(AF_INET6, host, &a6.sin6_addr) != 1:
                if inet_pton(AF_INET6, b"::ffff:" + host, &a6.sin6_addr) != 1:
                    raise ValueError(f"remote host {remote[0]!r} is not an IP address")
            length = sizeof(sockaddr_in6)
        s.remote = parsed
        s.remote_len = length
        s.has_remote = True
        return 0

    cdef void _connect(self, Slot* s) noexcept nogil:
        """With ``connect_sockets``: connect the RTP socket to the peer once it is fixed (signalled without
        latching, or latched). The kernel then skips the route lookup per packet and drops datagrams from
        other sources (strict symmetric RTP, RFC 4961)."""
        cdef sockaddr_storage unspec
        if not self.connect_sockets:
            return
        if s.has_remote and (not s.latch or s.latched):
            s.connected = connect(s.fd, <sockaddr*>&s.remote, s.remote_len) == 0
        elif s.connected:
            memset(&unspec, 0, sizeof(unspec))
            unspec.ss_family = AF_UNSPEC
            connect(s.fd, <sockaddr*>&unspec, sizeof(sockaddr_storage))  # dissolve the association
            s.connected = False

    def add_leg(self, int rtp_fd, int rtcp_fd, int family, remote, int payload_type, int telephone_event_pt,
                bint latch, uint32_t ssrc, uint16_t sequence_number, uint32_t timestamp) -> int:
        """Register a leg on two non-blocking UDP sockets (file descriptors, not owned); returns its slot."""
        cdef epoll_event ev
        cdef int slot
        cdef Slot* s
        if payload_type not in (0, 8):
            raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
        if family != AF_INET and family != AF_INET6:
            raise ValueError("only AF_INET and AF_INET6 sockets carry RTP here")
        slot = self._alloc()
        s = &self.slots[slot]
        s.kind = KIND_LEG
        s.fd = rtp_fd
        s.rtcp_fd = rtcp_fd
        s.family = family
        try:
            self._set_remote(s, remote)
            if s.has_remote:
                s.signalled = s.remote
                s.signalled_len = s.remote_len
                s.has_signalled = True
        except Exception:
            s.kind = KIND_FREE
            self.n_used -= 1
            raise
        s.payload_type = payload_type
        s.te_pt = telephone_event_pt
        s.latch = latch
        s.send = True
        s.receive = True
        s.last_rx = -1.0
        s.tx_ssrc = ssrc
        s.tx_seq = sequence_number
        s.tx_ts0 = timestamp
        s.tx_tick0 = self.tick_index
        s.tx_marker = True
        s.jb = <Jitter*>malloc(sizeof(Jitter))
        if s.jb == NULL:
            s.kind = KIND_FREE
            self.n_used -= 1
            raise MemoryError()
        jb_init(s.jb, self.jitter_min, self.jitter_max)
        ev.events = EPOLLIN
        ev.data.u64 = (<uint64_t>slot) << 1
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, rtp_fd, &ev) != 0:
            err = errno
            free(s.jb)
            s.jb = NULL
            s.kind = KIND_FREE
            self.n_used -= 1
            raise OSError(err, "epoll_ctl(ADD) failed for the RTP socket")
        if rtcp_fd >= 0:
            ev.data.u64 = ((<uint64_t>slot) << 1) | 1
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, rtcp_fd, &ev) != 0:
                s.rtcp_fd = -1
        self._connect(s)
        self.n_legs += 1
        return slot

    def update_leg(self, int slot, remote=None, int payload_type=-1, int telephone_event_pt=-2, int send=-1,
                   int receive=-1) -> None:
        """Change a leg; -1 (-2 for telephone_event_pt) leaves a field as it is."""
        cdef Slot* s = self._slot(slot, KIND_LEG)
        if remote is not None:
            self._set_remote(s, remote)
            if (not s.has_signalled or s.signalled_len != s.remote_len
                    or memcmp(&s.signalled, &s.remote, s.remote_len) != 0):
                s.signalled = s.remote
                s.signalled_len = s.remote_len
                s.has_signalled = True
                s.latched = False  # a new signalled address: with latching, the next source is the peer
                self._connect(s)
            elif s.latched:
                s.remote = s.source  # the same SDP address again (re-INVITE): keep the latched peer
                s.remote_len = s.source_len
        if payload_type != -1:
            if payload_type not in (0, 8):
                raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
            s.payload_type = payload_type
        if telephone_event_pt != -2:
            s.te_pt = telephone_event_pt
        if send != -1:
            if send and not s.send:
                s.tx_marker = True  # first packet of a talkspurt, RFC 3551 §4.1
            s.send = send
        if receive != -1:
            s.receive = receive
            if receive:
                s.timed_out = False
                s.last_rx = -1.0

    def add_player(self, const int16_t[::1] pcm, bint loop) -> int:
        """A local source playing ``pcm`` (int16, 8 kHz mono, C-contiguous, held here); returns its slot."""
        cdef int slot = self._alloc()
        cdef Slot* s = &self.slots[slot]
        s.kind = KIND_PLAYER
        s.fd = -1
        s.rtcp_fd = -1
        s.pcm = &pcm[0] if pcm.shape[0] > 0 else NULL
        s.pcm_len = pcm.shape[0]
        s.loop = loop
        self._players[slot] = pcm  # keeps the buffer acquired while the player lives
        return slot

    def remove(self, int slot) -> None:
        """Forget a slot; its sockets leave the epoll set (the caller closes them)."""
        cdef Slot* s = self._slot(slot, KIND_FREE)
        if s.kind == KIND_LEG:
            self.n_legs -= 1
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, s.fd, NULL)
            if s.rtcp_fd >= 0:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, s.rtcp_fd, NULL)
            free(s.jb)
            s.jb = NULL
        self._players.pop(slot, None)
        memset(s, 0, sizeof(Slot))
        s.kind = KIND_FREE
        self.in_codec[slot] = C_NONE
        self.out_codec[slot] = C_NONE
        self.n_used -= 1
        while self.n_high > 0 and self.slots[self.n_high - 1].kind == KIND_FREE:
            self.n_high -= 1

    def send_dtmf(self, int slot, int event, int duration) -> None:
        """Queue RFC 4733 event ``event`` (0..15) lasting ``duration`` timestamp units."""
        cdef Slot* s = self._slot(slot, KIND_LEG)
        if s.te_pt < 0:
            raise ValueError(f"slot {slot} has no telephone-event payload type")
        if not 0 <= event <= 15:
            raise ValueError(f"event {event} is not a DTMF event (0..15)")
        if s.dtmf_q_len >= DTMF_QUEUE:
            raise RuntimeError(f"slot {slot} already has {DTMF_QUEUE} digits queued")
        cdef int i = (s.dtmf_q_head + s.dtmf_q_len) % DTMF_QUEUE
        s.dtmf_q_event[i] = event
        s.dtmf_q_duration[i] = max(FRAME, min(duration, 0xFFFF))
        s.dtmf_q_len += 1

    def set_tap(self, int slot, bint received, bint sent) -> None:
        """Make ``pcm_in[slot]`` (what the slot received) and ``out_pcm[slot]`` (what it was sent) valid."""
        cdef Slot* s = self._slot(slot, KIND_FREE)
        s.tap_in = received
        s.tap_out = sent

    def is_leg(self, int slot) -> bool:
        return 0 <= slot < self.max_slots and self.slots[slot].kind == KIND_LEG

    def in_use(self, int slot) -> bool:
        return 0 <= slot < self.max_slots and self.slots[slot].kind != KIND_FREE

    @property
    def slots_high(self) -> int:
        """One past the highest slot in use: the rows the mixing kernel must look at."""
        return self.n_high

    @property
    def slots_used(self) -> int:
        return self.n_used

    @property
    def legs(self) -> int:
        """RTP legs in use (the other used slots are players)."""
        return self.n_legs

    cdef object _remote_tuple(self, Slot* s):
        cdef char text[64]
        cdef sockaddr_in* a4
        cdef sockaddr_in6* a6
        if not s.has_remote:
            return None
        if s.remote.ss_family == AF_INET:
            a4 = <sockaddr_in*>&s.remote
            inet_ntop(AF_INET, &a4.sin_addr, text, 64)
            return (text.decode("ascii"), ntohs(a4.sin_port))
        a6 = <sockaddr_in6*>&s.remote
        inet_ntop(AF_INET6, &a6.sin6_addr, text, 64)
        return (text.decode("ascii"), ntohs(a6.sin6_port))

    def leg_stats(self, int slot) -> dict:
        """Counters of one leg as a dict (see mediagw.media.engine.LegStats)."""
        cdef Slot* s = self._slot(slot, KIND_LEG)
        cdef Jitter* jb = s.jb
        cdef int64_t expected = s.expected_prior_sources + ((s.ext_max - s.base_ext + 1) if s.has_ssrc else 0)
        return {
            "received": s.packets_received,
            "octets_received": s.octets_received,
            "expected": expected,
            "lost": max(0, expected - s.packets_received),
            "duplicates": jb.duplicates,
            "late": jb.late,
            "concealed": jb.concealed,
            "underruns": jb.underruns,
            "skipped": jb.skipped,
            "sent": s.packets_sent,
            "octets_sent": s.octets_sent,
            "jitter_ms": jb.jitter * 20.0,
            "depth_frames": jb.depth,
            "last_rx": s.last_rx if s.last_rx >= 0 else None,
            "malformed": s.malformed,
            "wrong_source": s.wrong_source,
            "wrong_payload_type": s.wrong_payload_type,
            "rtcp_received": s.rtcp_received,
            "ssrc": s.ssrc if s.has_ssrc else None,
            "extended_max_seq": s.ext_max if s.has_ssrc else None,
            "base_seq": s.base_ext if s.has_ssrc else None,
            "source_received": s.packets_received - s.received_prior_sources,
            "jitter_units": jb.jitter * FRAME,
            "sending": bool(s.send and s.has_remote),
            "remote": self._remote_tuple(s),
            "tx_ssrc": s.tx_ssrc,
            "tx_timestamp": s.last_tx_ts,
        }

    def pop_events(self) -> list:
        """Events since the last call, as tuples ``(kind, slot, a, b)`` (see EVENT_*)."""
        cdef list out = self._events
        self._events = []
        return out

    # -- the hot path ------------------------------------------------------------------------------------

    def receive(self, double now) -> int:
        """Drain every socket, feed the jitter buffers, play one frame per slot; returns the slot count."""
        cdef double t0 = now_seconds(), t1
        cdef int n, k, r, i, slot, fd
        cdef uint64_t tag
        cdef int64_t before = self.packets_in
        self.tick_index += 1
        self.ticks += 1
        self.now = now
        while True:
            n = epoll_wait(self.epfd, self.events, EPOLL_BATCH, 0)
            if n < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, "epoll_wait failed")
            for k in range(n):
                tag = self.events[k].data.u64
                slot = <int>(tag >> 1)
                if self.slots[slot].kind != KIND_LEG:
                    continue
                fd = self.slots[slot].rtcp_fd if tag & 1 else self.slots[slot].fd
                while True:
                    for i in range(BATCH):
                        self.msgs[i].msg_hdr.msg_name = &self.names[i]
                        self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                        self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
                        self.msgs[i].msg_hdr.msg_iovlen = 1
                        self.msgs[i].msg_hdr.msg_control = NULL
                        self.msgs[i].msg_hdr.msg_controllen = 0
                        self.msgs[i].msg_hdr.msg_flags = 0
                    r = recvmmsg(fd, self.msgs, BATCH, MSG_DONTWAIT, NULL)
                    self.syscalls_rx += 1
                    if r <= 0:
                        break
                    if tag & 1:
                        self.slots[slot].rtcp_received += r
                        self.rtcp_in += r
                    else:
                        for i in range(r):
                            if self.msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                                self.slots[slot].malformed += 1
                                continue
                            self._packet(slot, self.bufs + i * PKT_MAX, self.msgs[i].msg_len, &self.names[i],
                                         self.msgs[i].msg_hdr.msg_namelen, now)
                    if r < BATCH:
                        break
            if n < EPOLL_BATCH:
                break
        self.last_packets_in = self.packets_in - before
        t1 = now_seconds()
        self.time_rx += t1 - t0
        self._playout(now)
        self.time_playout += now_seconds() - t1
        return self.n_high

    cdef void _packet(self, int slot, uint8_t* data, Py_ssize_t length, sockaddr_storage* src,
                      socklen_t src_len, double now):
        """One received datagram: RFC 3550 §5.1 header, source check, accounting, routing by payload type."""
        cdef Slot* s = &self.slots[slot]
        cdef Py_ssize_t off, end
        cdef int cc, pt, pad
        cdef uint16_t seq
        cdef uint32_t ts, ssrc
        cdef int32_t d
        if length < 12 or (data[0] >> 6) != 2:
            s.malformed += 1
            return
        if s.latch:
            if not s.latched:
                # NAT latching: the first packet's source is the peer from now on (symmetric RTP, RFC 4961).
                memcpy(&s.source, src, src_len)
                s.source_len = src_len
                memcpy(&s.remote, src, src_len)
                s.remote_len = src_len
                s.has_remote = True
                s.latched = True
                self._connect(s)
            elif src_len != s.source_len or memcmp(src, &s.source, src_len) != 0:
                s.wrong_source += 1
                return
        cc = data[0] & 0x0F
        off = 12 + 4 * cc
        end = length
        if data[0] & 0x20:  # padding, RFC 3550 §5.1
            pad = data[length - 1]
            if pad == 0:
                s.malformed += 1
                return
            end -= pad
        if data[0] & 0x10:  # header extension, RFC 3550 §5.3.1
            if off + 4 > length:
                s.malformed += 1
                return
            off += 4 + 4 * ((data[off + 2] << 8) | data[off + 3])
        if off > end:
            s.malformed += 1
            return
        pt = data[1] & 0x7F
        seq = (data[2] << 8) | data[3]
        ts = (<uint32_t>data[4] << 24) | (<uint32_t>data[5] << 16) | (<uint32_t>data[6] << 8) | data[7]
        ssrc = (<uint32_t>data[8] << 24) | (<uint32_t>data[9] << 16) | (<uint32_t>data[10] << 8) | data[11]
        self.packets_in += 1
        s.packets_received += 1
        s.octets_received += end - off
        s.last_rx = now
        s.timed_out = False
        # Per-source sequence accounting, RFC 3550 §6.4.1 / Appendix A.1 (extended highest sequence number).
        if not s.has_ssrc or ssrc != s.ssrc:
            if s.has_ssrc:
                s.expected_prior_sources += s.ext_max - s.base_ext + 1
                s.received_prior_sources = s.packets_received - 1  # this packet belongs to the new source
                self._events.append((EVENT_SSRC, slot, s.ssrc, ssrc))
            s.has_ssrc = True
            s.ssrc = ssrc
            s.max_seq = seq
            s.ext_max = seq
            s.base_ext = seq
        else:
            d = seq_diff(seq, s.max_seq)
            if d > 0:
                s.ext_max += d
                s.max_seq = seq
            elif d < -3000:
                # RFC 3550 A.1: a very large jump; re-base on the new sequence space.
                s.expected_prior_sources += s.ext_max - s.base_ext + 1
                s.received_prior_sources = s.packets_received - 1
                s.max_seq = seq
                s.ext_max = seq
                s.base_ext = seq
        if not s.receive:
            return
        if pt == s.te_pt:
            self._dtmf_received(slot, s, ssrc, ts, data + off, end - off)
        elif pt == 0 or pt == 8:
            jb_put(s.jb, ssrc, ts, pt, data + off, end - off)
        else:
            s.wrong_payload_type += 1

    cdef void _dtmf_finish(self, int slot, Slot* s):
        """Report the open event once and remember it as finished."""
        cdef int i
        self._events.append((EVENT_DTMF, slot, s.dtmf_event, s.dtmf_duration))
        s.dtmf_active = False
        if s.dtmf_fin_len < DTMF_FINISHED:
            i = (s.dtmf_fin_head + s.dtmf_fin_len) % DTMF_FINISHED
            s.dtmf_fin_len += 1
        else:
            i = s.dtmf_fin_head
            s.dtmf_fin_head = (s.dtmf_fin_head + 1) % DTMF_FINISHED
        s.dtmf_fin_ssrc[i] = s.dtmf_ssrc
        s.dtmf_fin_ts[i] = s.dtmf_ts

    cdef void _dtmf_received(self, int slot, Slot* s, uint32_t ssrc, uint32_t ts, const uint8_t* p,
                             Py_ssize_t n):
        """RFC 4733 §2.5.1: one event per (SSRC, timestamp), reported once (as ``DtmfReceiver.receive``):
        at its first end packet, or when another event starts while it is open (its ends were lost)."""
        cdef int event, duration, k
        cdef bint end
        if n < 4:
            s.malformed += 1
            return
        event = p[0]
        end = (p[1] & 0x80) != 0
        duration = (p[2] << 8) | p[3]
        if event > 15:
            return  # not a DTMF digit (RFC 4733 §3.2: flash, tones ...)
        for k in range(s.dtmf_fin_len):
            if s.dtmf_fin_ssrc[k] == ssrc and s.dtmf_fin_ts[k] == ts:
                return  # a retransmitted end packet of a finished event (§2.5.1.4)
        if s.dtmf_active and (s.dtmf_ssrc != ssrc or s.dtmf_ts != ts):
            self._dtmf_finish(slot, s)
        if not s.dtmf_active:
            s.dtmf_active = True
            s.dtmf_ssrc = ssrc
            s.dtmf_ts = ts
            s.dtmf_event = event
            s.dtmf_duration = duration
        elif duration > s.dtmf_duration:
            s.dtmf_duration = duration
        s.dtmf_last_seen = self.now
        if end:
            self._dtmf_finish(slot, s)

    cdef void _playout(self, double now):
        """One frame per slot into the kernel's input arrays; RTP timeouts; which rows to encode."""
        cdef int slot, kind, pt, gain, k
        cdef int64_t take
        cdef const uint8_t* payload
        cdef const int16_t* table
        cdef Slot* s
        cdef uint8_t* crow
        cdef int16_t* prow
        for slot in range(self.n_high):
            s = &self.slots[slot]
            if s.kind == KIND_FREE:
                self.in_codec[slot] = C_NONE
                self.out_codec[slot] = C_NONE
                continue
            prow = &self.pcm_in[slot, 0]
            if s.kind == KIND_PLAYER:
                self.out_codec[slot] = C_PCM if s.tap_out else C_NONE
                if s.finished or s.pcm_len == 0:
                    self.in_codec[slot] = C_NONE
                    if s.tap_in:
                        memset(prow, 0, FRAME * sizeof(int16_t))
                    if not s.finished:
                        s.finished = True
                        self._events.append((EVENT_PLAYER_DONE, slot, 0, 0))
                    continue
                k = 0
                while k < FRAME:
                    take = min(FRAME - k, s.pcm_len - s.pcm_pos)
                    memcpy(prow + k, s.pcm + s.pcm_pos, take * sizeof(int16_t))
                    k += <int>take
                    s.pcm_pos += take
                    if s.pcm_pos >= s.pcm_len:
                        if s.loop:
                            s.pcm_pos = 0
                        else:
                            memset(prow + k, 0, (FRAME - k) * sizeof(int16_t))
                            s.finished = True
                            self._events.append((EVENT_PLAYER_DONE, slot, 0, 0))
                            break
                self.in_codec[slot] = C_PCM
                continue
            # -- leg --
            if s.dtmf_active and now >= s.dtmf_last_seen + DTMF_OPEN_TIMEOUT:
                # the end packets of an event were all lost (mediagw.media.dtmf.DtmfReceiver.handle_timer)
                self._dtmf_finish(slot, s)
            if s.receive:
                kind = jb_pop(s.jb, self.tick_index, &payload, &pt, &gain)
                if s.last_rx < 0:
                    s.last_rx = now
                elif not s.timed_out and now - s.last_rx >= self.rtp_timeout:
                    s.timed_out = True
                    self._events.append((EVENT_TIMEOUT, slot, now - s.last_rx, 0))
            else:
                kind = F_SILENCE
            if kind == F_AUDIO and not s.tap_in:
                memcpy(&self.codes[slot, 0], payload, FRAME)
                self.in_codec[slot] = C_PCMA if pt == 8 else C_PCMU
            elif kind == F_SILENCE:
                self.in_codec[slot] = C_NONE
                if s.tap_in:
                    memset(prow, 0, FRAME * sizeof(int16_t))
            else:
                if pt == 8:
                    table = &ALAW_DECODE[0]
                else:
                    table = &ULAW_DECODE[0]
                if gain == 4096:
                    for k in range(FRAME):
                        prow[k] = table[payload[k]]
                else:
                    for k in range(FRAME):
                        prow[k] = <int16_t>((table[payload[k]] * gain + 2048) >> 12)
                self.in_codec[slot] = C_PCM
            if s.send and s.has_remote:
                self.out_codec[slot] = C_PCMA if s.payload_type == 8 else C_PCMU
            else:
                self.out_codec[slot] = C_PCM if s.tap_out else C_NONE

    def transmit(self, double now) -> int:
        """Send this tick's packet of every sending leg; returns the number of packets sent."""
        cdef double t0 = now_seconds()
        cdef int slot, i, r, length, sent = 0
        cdef Slot* s
        cdef uint8_t pkt[12 + FRAME]
        cdef uint32_t ts
        cdef int duration, pt
        cdef bint marker, end
        for slot in range(self.n_high):
            s = &self.slots[slot]
            if s.kind != KIND_LEG or not s.send or not s.has_remote:
                continue
            ts = s.tx_ts0 + <uint32_t>(FRAME * (self.tick_index - s.tx_tick0))
            if not s.dtmf_tx_active and s.dtmf_q_len > 0 and s.te_pt >= 0:
                i = s.dtmf_q_head
                s.dtmf_q_head = (s.dtmf_q_head + 1) % DTMF_QUEUE
                s.dtmf_q_len -= 1
                s.dtmf_tx_active = True
                s.dtmf_tx_first = True
                s.dtmf_tx_event = s.dtmf_q_event[i]
                s.dtmf_tx_total = s.dtmf_q_duration[i]
                s.dtmf_tx_elapsed = 0
                s.dtmf_tx_ends = 0
                s.dtmf_tx_ts = ts  # RFC 4733 §2.5.1.2: the event's timestamp is its start, kept throughout
            if s.dtmf_tx_active:
                if s.dtmf_tx_ends == 0:
                    s.dtmf_tx_elapsed += FRAME
                    if s.dtmf_tx_elapsed >= s.dtmf_tx_total:
                        s.dtmf_tx_elapsed = s.dtmf_tx_total
                        s.dtmf_tx_ends = 1
                else:
                    s.dtmf_tx_ends += 1
                end = s.dtmf_tx_ends > 0
                marker = s.dtmf_tx_first  # RFC 4733 §2.5.1.2: M bit on the first packet of an event
                s.dtmf_tx_first = False
                pt = s.te_pt
                ts = s.dtmf_tx_ts
                pkt[12] = <uint8_t>s.dtmf_tx_event
                pkt[13] = (0x80 if end else 0) | DTMF_VOLUME
                pkt[14] = <uint8_t>(s.dtmf_tx_elapsed >> 8)
                pkt[15] = <uint8_t>(s.dtmf_tx_elapsed & 0xFF)
                length = 16
                if s.dtmf_tx_ends >= DTMF_END_COPIES:  # §2.5.1.4: the end packet three times
                    s.dtmf_tx_active = False
            else:
                marker = s.tx_marker
                pt = s.payload_type
                memcpy(pkt + 12, &self.out_codes[slot, 0], FRAME)
                length = 12 + FRAME
            s.tx_marker = False
            pkt[0] = 0x80  # V=2, no padding, no extension, no CSRC (RFC 3550 §5.1)
            pkt[1] = (0x80 if marker else 0) | <uint8_t>pt
            pkt[2] = <uint8_t>(s.tx_seq >> 8)
            pkt[3] = <uint8_t>(s.tx_seq & 0xFF)
            pkt[4] = <uint8_t>(ts >> 24)
            pkt[5] = <uint8_t>(ts >> 16)
            pkt[6] = <uint8_t>(ts >> 8)
            pkt[7] = <uint8_t>ts
            pkt[8] = <uint8_t>(s.tx_ssrc >> 24)
            pkt[9] = <uint8_t>(s.tx_ssrc >> 16)
            pkt[10] = <uint8_t>(s.tx_ssrc >> 8)
            pkt[11] = <uint8_t>s.tx_ssrc
            s.tx_seq = <uint16_t>(s.tx_seq + 1)
            s.last_tx_ts = ts
            if s.connected:
                r = <int>send(s.fd, pkt, length, MSG_DONTWAIT)
            else:
                r = <int>sendto(s.fd, pkt, length, MSG_DONTWAIT, <sockaddr*>&s.remote, s.remote_len)
            self.syscalls_tx += 1
            if r < 0:
                s.send_errors += 1
                self.send_errors += 1
                continue
            s.packets_sent += 1
            s.octets_sent += length - 12
            self.octets_out += length
            sent += 1
        self.packets_out += sent
        self.last_packets_out = sent
        self.time_tx += now_seconds() - t0
        return sent
