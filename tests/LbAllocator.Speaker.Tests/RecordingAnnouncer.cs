using LbAllocator.Core;

namespace LbAllocator.Speaker.Tests;

/// <summary>An announcer that only remembers what it was told to answer for (the set is swapped whole, so a test reading it from another thread sees one set or the other).</summary>
internal sealed class RecordingAnnouncer : IAnnouncer
{
    public IReadOnlyDictionary<Ip, string[]> Owned { get; private set; } = new Dictionary<Ip, string[]>();

    public IReadOnlyCollection<Ip> OwnedAddresses => [.. Owned.Keys];

    public IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned)
    {
        var before = Owned;
        Owned = owned;
        return [.. owned.SelectMany(kv => kv.Value.Where(i => !(before.TryGetValue(kv.Key, out var was) && was.Contains(i))).Select(i => (kv.Key, i)))];
    }

    /// <summary>Every gratuitous round asked for, in order, whether the address was owned or not.</summary>
    public List<(Ip Address, string Interface)> Gratuitous { get; } = [];

    public bool AnnounceGratuitously(Ip address, string interfaceName)
    {
        lock (Gratuitous)
        {
            Gratuitous.Add((address, interfaceName));
        }

        return Owned.ContainsKey(address);
    }

    public IReadOnlyDictionary<Ip, AddressCounters> Counters() => new Dictionary<Ip, AddressCounters>();

    /// <summary>The interfaces it was last told to listen on.</summary>
    public IReadOnlyCollection<string> Listening { get; private set; } = [];

    /// <summary>Interfaces whose capture "cannot open", with why.</summary>
    public Dictionary<string, string> Broken { get; } = new(StringComparer.Ordinal);

    public List<Heartbeat> Sent { get; } = [];

    private int _listens;

    /// <summary>How many times it was told to listen: once a pass.</summary>
    public int Listens => Volatile.Read(ref _listens);

    public IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces)
    {
        Interlocked.Increment(ref _listens);
        Listening = [.. interfaces];
        return Broken.Where(kv => interfaces.Contains(kv.Key)).ToDictionary(StringComparer.Ordinal);
    }

    public int SendHeartbeat(Heartbeat heartbeat)
    {
        lock (Sent)
        {
            Sent.Add(heartbeat);
        }

        return Listening.Count(i => !Broken.ContainsKey(i));
    }

    public event Action<Heartbeat, TimeSpan>? HeartbeatHeard;

    /// <summary>Heard ones are delivered at once by <see cref="Hear"/>.</summary>
    public void ReadHeartbeats()
    {
    }

    public event Action? CaptureTrouble;

    public event Action<Ip, MacAddress>? AddressClaimed;

    public event Action<Ip, MacAddress>? AddressAnswered;

    /// <summary>The addresses it was last told to verify.</summary>
    public IReadOnlyCollection<Ip> Verifying { get; private set; } = [];

    public IReadOnlyDictionary<string, MacAddress> Interfaces =>
        Listening.Where(i => !Broken.ContainsKey(i)).ToDictionary(i => i, i => new MacAddress(0x02_00_00_00_00_01), StringComparer.Ordinal);

    public void Verify(IReadOnlyCollection<Ip> addresses) => Verifying = [.. addresses];

    /// <summary>Delivers an answer for a verified address as if heard on the LAN.</summary>
    public void Answer(Ip address, MacAddress from) => AddressAnswered?.Invoke(address, from);

    /// <summary>The addresses it was last told to watch for claims.</summary>
    public IReadOnlyCollection<Ip> Guarded { get; private set; } = [];

    /// <summary>Every probe sent, in order.</summary>
    public List<(Ip Address, string Interface)> Probes { get; } = [];

    public void Guard(IReadOnlyCollection<Ip> addresses) => Guarded = [.. addresses];

    public bool Probe(Ip address, string interfaceName)
    {
        lock (Probes)
        {
            Probes.Add((address, interfaceName));
        }

        return true;
    }

    /// <summary>Delivers a claim as if a host that is not a speaker said it uses the address.</summary>
    public void Claim(Ip address, MacAddress claimant) => AddressClaimed?.Invoke(address, claimant);

    /// <summary>Delivers a heartbeat as if heard on the LAN <paramref name="age"/> ago.</summary>
    public void Hear(Heartbeat heartbeat, TimeSpan age = default) => HeartbeatHeard?.Invoke(heartbeat, age);

    public void Trouble() => CaptureTrouble?.Invoke();
}
