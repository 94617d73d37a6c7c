namespace LbAllocator.Speaker.Lan;

/// <summary>What a speakers' LAN message is; the value is its byte on the wire.</summary>
public enum LanKind : byte
{
    /// <summary>Unicast to each ring neighbour every heartbeat interval; carries the echo of the neighbour's last beat.</summary>
    Beat = 1,

    /// <summary>
    /// Broadcast: a speaker (a new epoch of it) asks to join, and those that would be its ring neighbours answer with
    /// their view; then, once it has one, it says it joined, and everyone adds it.
    /// </summary>
    Join = 2,

    /// <summary>Broadcast: the sender stopped answering and leaves (SIGTERM, or it cannot hear the LAN).</summary>
    Leave = 3,

    /// <summary>Broadcast: a ring neighbour no longer hears the subject; a majority of its neighbours makes it dead.</summary>
    Suspect = 4,

    /// <summary>Unicast: send me your view (our views' digests differ).</summary>
    SyncRequest = 5,

    /// <summary>Unicast: one part of the sender's view.</summary>
    Sync = 6,
}

/// <summary>One speaker's entry in a view: its current epoch, whether that epoch is over, and its MAC as last learnt.</summary>
public readonly record struct ViewEntry(string Name, ulong Epoch, bool Dead, MacAddress Mac);

/// <summary>
/// A speakers' LAN message, decoded and authenticated. Every message names its sender, the sender's epoch (a new one
/// at every start and every rejoin) and a sequence number, increasing per sender epoch for beats and for the rest apart
/// (beats are read in batches, the rest as they come, so the two arrive out of order with each other).
/// </summary>
public abstract record LanMessage(string From, ulong Epoch, ulong Sequence)
{
    public abstract LanKind Kind { get; }
}

/// <param name="Interval">How often the sender beats.</param>
/// <param name="DeadInterval">How long the sender may go unheard before its neighbours suspect it.</param>
/// <param name="EchoEpoch">The recipient's epoch as the sender last heard it (0: not heard yet).</param>
/// <param name="EchoSequence">The sequence number of the recipient's last beat the sender heard.</param>
/// <param name="Digest">The sender's view digest, so neighbours whose views differ catch up.</param>
public sealed record Beat(string From, ulong Epoch, ulong Sequence, TimeSpan Interval, TimeSpan DeadInterval, ulong EchoEpoch, ulong EchoSequence, ulong Digest)
    : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.Beat;
}

/// <param name="Joined">False: asking for the view (nobody adds the sender yet, so one that cannot hear the answers disturbs nothing); true: joined.</param>
public sealed record Join(string From, ulong Epoch, ulong Sequence, TimeSpan Interval, TimeSpan DeadInterval, bool Joined) : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.Join;
}

public sealed record Leave(string From, ulong Epoch, ulong Sequence) : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.Leave;
}

/// <param name="Lifetime">How long the suspicion counts after it is heard: the subject treats the sender as not hearing it for as long.</param>
public sealed record Suspect(string From, ulong Epoch, ulong Sequence, string Subject, ulong SubjectEpoch, TimeSpan Lifetime) : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.Suspect;
}

public sealed record SyncRequest(string From, ulong Epoch, ulong Sequence) : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.SyncRequest;
}

/// <param name="EchoEpoch">The requester's epoch: a view is taken only in answer to a request of the current epoch.</param>
/// <param name="EchoSequence">The sequence number of the Join or SyncRequest answered, so an old view cannot be replayed.</param>
/// <param name="Part">This part's number, from 0.</param>
/// <param name="Parts">How many parts the view was sent in.</param>
public sealed record Sync(string From, ulong Epoch, ulong Sequence, ulong EchoEpoch, ulong EchoSequence, int Part, int Parts, IReadOnlyList<ViewEntry> Entries)
    : LanMessage(From, Epoch, Sequence)
{
    public override LanKind Kind => LanKind.Sync;
}
