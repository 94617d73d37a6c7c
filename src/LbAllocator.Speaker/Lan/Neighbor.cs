namespace LbAllocator.Speaker.Lan;

/// <summary>
/// One ring neighbour as this speaker watches it (timestamps of the <see cref="TimeProvider"/>): when it was last
/// heard, and when the latest of our beats it echoed was sent, which is what proves it still hears us.
/// </summary>
internal sealed class Neighbor(string name, ulong epoch, long since, long graceUntil)
{
    public string Name { get; } = name;

    public ulong Epoch { get; } = epoch;

    /// <summary>When it became our neighbour: a neighbour never heard is suspected only after a longer wait from here.</summary>
    public long Since { get; } = since;

    /// <summary>Until when it counts as hearing us without an echo yet: it cannot suspect us sooner (0: no grace).</summary>
    public long GraceUntil { get; } = graceUntil;

    /// <summary>When its latest beat arrived; null before the first.</summary>
    public long? LastHeard { get; set; }

    /// <summary>Its dead interval, as its beats say.</summary>
    public TimeSpan TheirDeadInterval { get; set; }

    /// <summary>Its heartbeat interval, as its beats say.</summary>
    public TimeSpan TheirInterval { get; set; }

    /// <summary>The sequence number of its latest beat: echoed in ours, so it knows we hear it.</summary>
    public ulong LastBeat { get; set; }

    /// <summary>When we sent the latest of our beats that it echoed; null before the first echo.</summary>
    public long? EchoedSentAt { get; set; }

    /// <summary>Until when it says it does not hear us (its Suspect of us): it may count towards our death until then.</summary>
    public long SuspectsUsUntil { get; set; }

    /// <summary>When we last broadcast a Suspect of it.</summary>
    public long? SuspectedAt { get; set; }

    /// <summary>Beats in a row whose view digest differed from ours.</summary>
    public int Mismatches { get; set; }

    public long? SyncRequestedAt { get; set; }
}
