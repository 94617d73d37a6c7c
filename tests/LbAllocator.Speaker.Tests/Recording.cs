using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Speaker.Capture;

namespace LbAllocator.Speaker.Tests;

/// <summary>An answerer that only remembers what it was told to answer for (the set is swapped whole, so a test reading it from another thread sees one set or the other).</summary>
internal sealed class RecordingAnswerer : IAnswerer
{
    public IReadOnlyDictionary<Ip, string[]> Owned { get; private set; } = new Dictionary<Ip, string[]>();

    public IReadOnlyCollection<Ip> OwnedAddresses => [.. Owned.Keys];

    /// <summary>Every gratuitous round asked for, in order, whether the address was owned or not.</summary>
    public List<(Ip Address, string Interface)> Gratuitous { get; } = [];

    public IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned)
    {
        var before = Owned;
        Owned = owned;
        return [.. owned.SelectMany(kv => kv.Value.Where(i => !(before.TryGetValue(kv.Key, out var was) && was.Contains(i))).Select(i => (kv.Key, i)))];
    }

    public bool AnnounceGratuitously(Ip address, string interfaceName)
    {
        lock (Gratuitous)
        {
            Gratuitous.Add((address, interfaceName));
        }

        return Owned.ContainsKey(address);
    }

    public IReadOnlyDictionary<Ip, AddressCounters> Counters() => new Dictionary<Ip, AddressCounters>();
}

/// <summary>An address watch that records what it was told to guard, probe and verify, and delivers claims and answers on demand.</summary>
internal sealed class RecordingWatch : IAddressWatch
{
    public event Action<Ip, MacAddress>? AddressClaimed;

    public event Action<Ip, MacAddress>? AddressAnswered;

    /// <summary>The addresses it was last told to watch for claims.</summary>
    public IReadOnlyCollection<Ip> Guarded { get; private set; } = [];

    /// <summary>The addresses it was last told to verify.</summary>
    public IReadOnlyCollection<Ip> Verifying { get; private set; } = [];

    /// <summary>Every probe sent, in order.</summary>
    public List<(Ip Address, string Interface)> Probes { get; } = [];

    public void Guard(IReadOnlyCollection<Ip> addresses) => Guarded = [.. addresses];

    public void Verify(IReadOnlyCollection<Ip> addresses) => Verifying = [.. addresses];

    public bool Probe(Ip address, string interfaceName)
    {
        lock (Probes)
        {
            Probes.Add((address, interfaceName));
        }

        return true;
    }

    /// <summary>Delivers a claim as if another MAC said it uses the address.</summary>
    public void Claim(Ip address, MacAddress claimant) => AddressClaimed?.Invoke(address, claimant);

    /// <summary>Delivers an answer for a verified address as if heard on the LAN.</summary>
    public void Answer(Ip address, MacAddress from) => AddressAnswered?.Invoke(address, from);
}

/// <summary>Captures that open on every interface asked, but the ones marked broken.</summary>
internal sealed class FakeCaptures : ICaptures
{
    public static readonly MacAddress Mac = new(0x02_00_00_00_00_01);

    private int _listens;

    public event Action? CaptureTrouble;

    /// <summary>The interfaces it was last told to listen on.</summary>
    public IReadOnlyCollection<string> Listening { get; private set; } = [];

    /// <summary>Interfaces whose capture "cannot open", with why.</summary>
    public Dictionary<string, string> Broken { get; } = new(StringComparer.Ordinal);

    /// <summary>How many times it was told to listen: once a pass.</summary>
    public int Listens => Volatile.Read(ref _listens);

    public IReadOnlyDictionary<string, MacAddress> Interfaces =>
        Listening.Where(i => !Broken.ContainsKey(i)).ToDictionary(i => i, _ => Mac, StringComparer.Ordinal);

    public bool AnyStuck => false;

    public IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces)
    {
        Interlocked.Increment(ref _listens);
        Listening = [.. interfaces];
        return Broken.Where(kv => interfaces.Contains(kv.Key)).ToDictionary(StringComparer.Ordinal);
    }

    public void Trouble() => CaptureTrouble?.Invoke();
}

/// <summary>A status writer that records what it was handed: the last plan's statuses, the events and the verdicts.</summary>
internal sealed class RecordingStatusWriter : IStatusWriter
{
    private readonly Lock _lock = new();

    public SpeakerPlan? Plan { get; private set; }

    public IReadOnlyDictionary<Ip, AddressConflict> Conflicts { get; private set; } = new Dictionary<Ip, AddressConflict>();

    public List<PlannedEvent> Events { get; } = [];

    public Dictionary<string, (bool Verified, string Reason, string Message)> Verified { get; } = new(StringComparer.Ordinal);

    public void Sync(SpeakerPlan plan, IReadOnlyDictionary<Ip, AddressConflict> conflicts, IReadOnlyDictionary<string, MacAddress> macs)
    {
        lock (_lock)
        {
            (Plan, Conflicts) = (plan, conflicts);
        }
    }

    public void SetVerified(string statusName, bool verified, string reason, string message)
    {
        lock (_lock)
        {
            Verified[statusName] = (verified, reason, message);
        }
    }

    public void StopVerifying(string statusName)
    {
        lock (_lock)
        {
            Verified.Remove(statusName);
        }
    }

    public void Record(IKubernetesObject<V1ObjectMeta> target, PlannedEvent plannedEvent)
    {
        lock (_lock)
        {
            Events.Add(plannedEvent);
        }
    }

    public void Forget(string serviceKey, string topic)
    {
    }

    public void Forget(string serviceKey)
    {
    }

    public List<PlannedEvent> EventsOf(string reason)
    {
        lock (_lock)
        {
            return [.. Events.Where(e => e.Reason == reason)];
        }
    }
}
