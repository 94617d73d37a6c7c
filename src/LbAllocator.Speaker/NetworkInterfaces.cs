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

    /// <summary>
    /// The interface's IPv6 link-local address as /proc/net/if_inet6 lists it, left out while tentative (duplicate
    /// address detection under way) or after DAD failed; null when it has none (IPv6 off there, addrgenmode none).
    /// </summary>
    public static byte[]? LinkLocal(string name, string path = "/proc/net/if_inet6")
    {
        const int scopeLink = 0x20, tentative = 0x40, dadFailed = 0x08;
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // no IPv6 in this kernel
        }

        // "fe800000000000000000000000000001 03 40 20 80 eth0": address, index, prefix length, scope, flags, name.
        foreach (var fields in lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))
        {
            if (fields is [{ Length: 32 } address, _, _, var scope, var flags, var device] && device == name
                && ParseHex(scope) == scopeLink && (ParseHex(flags) & (tentative | dadFailed)) == 0)
            {
                return Convert.FromHexString(address);
            }
        }

        return null;
    }

    /// <summary>The interface's index (for joining multicast groups on it), or null when it is gone.</summary>
    public static int? Index(string name, string root = "/sys/class/net")
    {
        try
        {
            return int.Parse(File.ReadAllText(Path.Combine(root, name, "ifindex")).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private static int ParseHex(string text) =>
        int.Parse(text.Trim().Replace("0x", "", StringComparison.Ordinal), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
