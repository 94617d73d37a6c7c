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

    public bool AnnounceGratuitously(Ip address, string interfaceName) => Owned.ContainsKey(address);

    public IReadOnlyDictionary<Ip, AddressCounters> Counters() => new Dictionary<Ip, AddressCounters>();
}
