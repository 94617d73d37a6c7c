using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker.Capture;

/// <summary>
/// An interface's IPv6 link-local address, which Neighbor Advertisements go out from (RFC 4861 section 7.2.4), kept
/// without reading /proc/net/if_inet6 for every announcement: read again after the kernel reports an address change,
/// and at most a second old.
/// </summary>
internal sealed partial class LinkLocalAddress(string interfaceName, ILogger logger)
{
    // Read again for an announcement when older than this, even without an address change reported (one may be missed).
    private static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(1);

    private volatile byte[]? _address;
    private long _readAt; // Stopwatch timestamp of the last read
    private int _readAfter; // address changes counted when it was read
    private bool _noneLogged;

    /// <summary>The link-local address; empty while the interface has none.</summary>
    public ReadOnlySpan<byte> Address => _address;

    /// <summary>
    /// Reads the address again. Says once per spell without one that it has none, when it advertises an IPv6 address
    /// there (an IPv4-only node without IPv6 has nothing to be told).
    /// </summary>
    public void Read(int addressChanges, bool advertising)
    {
        _readAfter = addressChanges;
        _readAt = Stopwatch.GetTimestamp();
        var now = NetworkInterfaces.LinkLocal(interfaceName);
        if (now is not null)
        {
            _noneLogged = false;
        }
        else if (advertising && !_noneLogged)
        {
            _noneLogged = true;
            LogNoLinkLocal(interfaceName);
        }

        _address = now;
    }

    /// <summary>
    /// <see cref="Read"/> for an announcement, unless read since the last address change and within <see cref="MaxAge"/>:
    /// the refresh announces address after address, and reading /proc/net/if_inet6 for each was a good part of the
    /// speaker's idle CPU.
    /// </summary>
    public void ReadIfStale(int addressChanges)
    {
        if (addressChanges != _readAfter || Stopwatch.GetElapsedTime(_readAt) >= MaxAge)
        {
            Read(addressChanges, advertising: true);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Interface} has no IPv6 link-local address: Neighbor Advertisements there go out from the advertised address itself until it has one")]
    private partial void LogNoLinkLocal(string @interface);
}
