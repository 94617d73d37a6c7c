using System.Collections.Frozen;
using LbAllocator.Core;
using LbAllocator.Speaker.Capture;

namespace LbAllocator.Speaker;

/// <summary>What this node hears said about addresses: claims of the ones it wants, answers for the ones it checks.</summary>
public interface IAddressWatch
{
    /// <summary>
    /// Watches these addresses (owned, probed or held back) for claims: <see cref="AddressClaimed"/> is raised for
    /// each ARP or Neighbor Advertisement from another MAC that says it uses one.
    /// </summary>
    void Guard(IReadOnlyCollection<Ip> addresses);

    /// <summary>Sends one probe for the address on the interface (ARP probe, or duplicate address detection); false when it could not go out.</summary>
    bool Probe(Ip address, string interfaceName);

    /// <summary>Another MAC (a speaker's or a foreign host's) claims a guarded address; on a capture thread: keep it short.</summary>
    event Action<Ip, MacAddress>? AddressClaimed;

    /// <summary>Addresses another node announces and this one checks: <see cref="AddressAnswered"/> is raised for every answer heard for one.</summary>
    void Verify(IReadOnlyCollection<Ip> addresses);

    /// <summary>Some host answered for (or announced) an address being verified, from this MAC (on a capture thread).</summary>
    event Action<Ip, MacAddress>? AddressAnswered;
}

/// <summary>Reads the claims in ARP and NDP frames for the guarded and the verified addresses, and sends probes.</summary>
public sealed class AddressWatch(Captures captures) : IAddressWatch, IFrameReader
{
    private volatile FrozenSet<Ip> _guarded = FrozenSet<Ip>.Empty;
    private volatile FrozenSet<Ip> _verified = FrozenSet<Ip>.Empty;

    public event Action<Ip, MacAddress>? AddressClaimed;

    public event Action<Ip, MacAddress>? AddressAnswered;

    public void Guard(IReadOnlyCollection<Ip> addresses) => _guarded = addresses.ToFrozenSet();

    public void Verify(IReadOnlyCollection<Ip> addresses) => _verified = addresses.ToFrozenSet();

    public bool Probe(Ip address, string interfaceName)
    {
        if (captures[interfaceName] is not { } capture)
        {
            return false;
        }

        var sent = capture.Send(address.Family == IpFamily.IPv4 ? Frames.ArpProbe(address, capture.MacBytes) : Frames.DuplicateAddressProbe(address, capture.MacBytes));
        if (!sent)
        {
            captures.SendFailed();
        }

        return sent;
    }

    void IFrameReader.OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame)
    {
        // Our own frames from another of our interfaces claim nothing.
        if (!Frames.TryReadClaim(frame, capture.MacBytes, out var address, out var claimant) || captures.Interfaces.Values.Contains(claimant))
        {
            return;
        }

        if (_guarded.Contains(address))
        {
            AddressClaimed?.Invoke(address, claimant);
        }
        else if (_verified.Contains(address))
        {
            AddressAnswered?.Invoke(address, claimant);
        }
    }
}
