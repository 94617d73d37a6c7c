using System.Globalization;
using System.Text.RegularExpressions;

namespace LbAllocator.Speaker;

/// <summary>One network interface as the kernel describes it in /sys/class/net.</summary>
public sealed record NetworkInterfaceInfo(string Name, bool Up, bool Broadcast, bool Loopback, bool NoArp, bool Enslaved, bool Ethernet)
{
    /// <summary>Why the interface cannot carry announcements by default, or null if it can.</summary>
    public string? Unusable(Regex exclude) =>
        Incapable
        ?? (Enslaved ? "enslaved to a bond or bridge"
        : exclude.IsMatch(Name) ? "matches the exclusion pattern"
        : null);

    /// <summary>Whether an L2Advertisement may name it: the exclusion pattern does not apply to explicit choices.</summary>
    public bool CanCarryWhenNamed => Incapable is null;

    /// <summary>Why the interface cannot carry ARP/NDP at all, or null if it can.</summary>
    private string? Incapable =>
        !Up ? "down"
        : Loopback ? "loopback"
        : !Ethernet ? "not Ethernet"
        : !Broadcast ? "not broadcast-capable"
        : NoArp ? "NOARP"
        : null;
}

/// <summary>Reads the interfaces of this network namespace from sysfs.</summary>
public static class NetworkInterfaces
{
    private const int IffUp = 0x1;
    private const int IffBroadcast = 0x2;
    private const int IffLoopback = 0x8;
    private const int IffNoArp = 0x80;
    private const int ArphrdEther = 1;

    public static IReadOnlyList<NetworkInterfaceInfo> Scan(string root = "/sys/class/net")
    {
        var result = new List<NetworkInterfaceInfo>();
        if (!Directory.Exists(root))
        {
            return result;
        }

        foreach (var dir in Directory.GetFileSystemEntries(root).Order(StringComparer.Ordinal))
        {
            try
            {
                var flags = ParseHex(File.ReadAllText(Path.Combine(dir, "flags")));
                var type = int.Parse(File.ReadAllText(Path.Combine(dir, "type")).Trim(), CultureInfo.InvariantCulture);
                result.Add(new NetworkInterfaceInfo(
                    Path.GetFileName(dir),
                    Up: (flags & IffUp) != 0,
                    Broadcast: (flags & IffBroadcast) != 0,
                    Loopback: (flags & IffLoopback) != 0,
                    NoArp: (flags & IffNoArp) != 0,
                    Enslaved: Path.Exists(Path.Combine(dir, "master")),
                    Ethernet: type == ArphrdEther));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // The interface went away while we read it; the next scan will not see it.
            }
        }

        return result;
    }

    private static int ParseHex(string text) =>
        int.Parse(text.Trim().Replace("0x", "", StringComparison.Ordinal), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
