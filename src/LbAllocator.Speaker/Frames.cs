using System.Buffers.Binary;
using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>
/// The Ethernet frames the speaker reads and writes: ARP requests and replies (RFC 826, gratuitous per
/// RFC 5227) and IPv6 Neighbor Solicitations and Advertisements (RFC 4861).
/// Hand-written on spans rather than built with PacketDotNet: answering must not allocate per frame, and
/// PacketDotNet has no builder for an advertisement with its link-layer option. The tests check every
/// frame byte for byte and parse our output with PacketDotNet as an independent reader.
/// </summary>
public static class Frames
{
    public const int ArpLength = 42;
    public const int NeighborAdvertisementLength = 86;
    public const int MacLength = 6;

    private const ushort EtherTypeArp = 0x0806;
    private const ushort EtherTypeIPv6 = 0x86DD;
    private const byte IcmpV6 = 58;
    private const byte NeighborSolicitation = 135;
    private const byte NeighborAdvertisement = 136;
    private const byte SourceLinkLayerOption = 1;
    private const byte TargetLinkLayerOption = 2;

    private static ReadOnlySpan<byte> Broadcast => [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    private static ReadOnlySpan<byte> SolicitedNodePrefix => [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];

    private static ReadOnlySpan<byte> AllNodes => [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    /// <summary>
    /// The address asked for by an ARP request sent to us (broadcast or our MAC) from another host, or false
    /// for anything else: replies, foreign unicast, our own frames, probes and gratuitous announcements.
    /// </summary>
    public static bool TryReadArpRequest(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> ourMac, out Ip target)
    {
        target = default;
        if (frame.Length < ArpLength
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherTypeArp
            || !(frame[..6].SequenceEqual(Broadcast) || frame[..6].SequenceEqual(ourMac))
            || frame[6..12].SequenceEqual(ourMac))
        {
            return false;
        }

        var arp = frame[14..];
        // Ethernet/IPv4 request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
        if (BinaryPrimitives.ReadUInt16BigEndian(arp) != 1 || BinaryPrimitives.ReadUInt16BigEndian(arp[2..]) != 0x0800
            || arp[4] != 6 || arp[5] != 4 || BinaryPrimitives.ReadUInt16BigEndian(arp[6..]) != 1)
        {
            return false;
        }

        var senderIp = arp.Slice(14, 4);
        var targetIp = arp.Slice(24, 4);
        // A sender announcing the address itself is a gratuitous ARP or a conflict, not a question.
        if (senderIp.SequenceEqual(targetIp))
        {
            return false;
        }

        target = new Ip(IpFamily.IPv4, BinaryPrimitives.ReadUInt32BigEndian(targetIp));
        return true;
    }

    /// <summary>Writes the reply to an ARP request that <see cref="TryReadArpRequest"/> accepted; returns its length.</summary>
    public static int WriteArpReply(ReadOnlySpan<byte> request, ReadOnlySpan<byte> ourMac, Span<byte> reply)
    {
        var asker = request.Slice(14 + 8, 6);
        var askerIp = request.Slice(14 + 14, 4);
        var target = request.Slice(14 + 24, 4);
        WriteArp(reply, asker, ourMac, operation: 2, ourMac, target, asker, askerIp);
        return ArpLength;
    }

    /// <summary>A gratuitous ARP (request or reply) for an address this node took over, to refresh neighbours' caches.</summary>
    public static byte[] GratuitousArp(Ip address, ReadOnlySpan<byte> ourMac, bool reply)
    {
        Span<byte> ip = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(ip, (uint)address.Value);
        var frame = new byte[ArpLength];
        // RFC 5227: the request has a zero target hardware address; the reply names the broadcast address.
        WriteArp(frame, Broadcast, ourMac, reply ? (ushort)2 : (ushort)1, ourMac, ip, reply ? Broadcast : stackalloc byte[6], ip);
        return frame;
    }

    /// <summary>
    /// An RFC 5227 ARP probe for an address this node is about to announce: a request from sender address
    /// 0.0.0.0 (so no neighbour learns anything from it), answered by any host that already uses the address.
    /// </summary>
    public static byte[] ArpProbe(Ip address, ReadOnlySpan<byte> ourMac)
    {
        Span<byte> ip = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(ip, (uint)address.Value);
        var frame = new byte[ArpLength];
        WriteArp(frame, Broadcast, ourMac, operation: 1, ourMac, stackalloc byte[4], stackalloc byte[6], ip);
        return frame;
    }

    /// <summary>
    /// A duplicate address detection probe (RFC 4862 section 5.4.2) for an IPv6 address this node is about to
    /// announce: a Neighbor Solicitation from the unspecified address to the target's solicited-node group, without
    /// a link-layer option; a host using the address answers with a Neighbor Advertisement to all nodes.
    /// </summary>
    public static byte[] DuplicateAddressProbe(Ip address, ReadOnlySpan<byte> ourMac)
    {
        const int icmpLength = 24;
        var frame = new byte[14 + 40 + icmpLength];
        Span<byte> group = stackalloc byte[16];
        SolicitedNodePrefix.CopyTo(group);
        Span<byte> target = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(target, address.Value);
        target[13..].CopyTo(group[13..]);
        MulticastMac(group, frame);
        ourMac.CopyTo(frame.AsSpan(6));
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), EtherTypeIPv6);
        var ip6 = frame.AsSpan(14);
        BinaryPrimitives.WriteUInt32BigEndian(ip6, 0x60000000);
        BinaryPrimitives.WriteUInt16BigEndian(ip6[4..], icmpLength);
        ip6[6] = IcmpV6;
        ip6[7] = 255;
        // Source: the unspecified address (left zero).
        group.CopyTo(ip6[24..]);
        var icmp = ip6.Slice(40, icmpLength);
        icmp[0] = NeighborSolicitation;
        target.CopyTo(icmp[8..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], IcmpV6Checksum(ip6[8..24], ip6[24..40], icmp));
        return frame;
    }

    /// <summary>
    /// An address another host says it uses, with that host's link-layer address: the sender of any ARP packet
    /// (request, reply, gratuitous; not a probe, whose sender address is 0.0.0.0), or the target of a well-formed
    /// Neighbor Advertisement. False for our own frames and for anything else. RFC 5227 section 2.4 counts each of
    /// these, for an address we use, as a conflict.
    /// </summary>
    public static bool TryReadClaim(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> ourMac, out Ip address, out MacAddress claimant)
    {
        address = default;
        claimant = default;
        if (frame.Length < ArpLength || frame[6..12].SequenceEqual(ourMac))
        {
            return false;
        }

        var etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == EtherTypeArp)
        {
            var arp = frame[14..];
            var senderIp = BinaryPrimitives.ReadUInt32BigEndian(arp[14..]);
            if (BinaryPrimitives.ReadUInt16BigEndian(arp) != 1 || BinaryPrimitives.ReadUInt16BigEndian(arp[2..]) != 0x0800
                || arp[4] != 6 || arp[5] != 4 || BinaryPrimitives.ReadUInt16BigEndian(arp[6..]) is not (1 or 2) || senderIp == 0
                || arp.Slice(8, 6).SequenceEqual(ourMac))
            {
                return false;
            }

            address = new Ip(IpFamily.IPv4, senderIp);
            claimant = MacAddress.Read(arp[8..]);
            return true;
        }

        if (etherType != EtherTypeIPv6 || frame.Length < 14 + 40 + 24)
        {
            return false;
        }

        var ip6 = frame[14..];
        var payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip6[4..]);
        if (ip6[0] >> 4 != 6 || ip6[6] != IcmpV6 || ip6[7] != 255 || payloadLength < 24 || payloadLength > ip6.Length - 40)
        {
            return false;
        }

        var icmp = ip6.Slice(40, payloadLength);
        if (icmp[0] != NeighborAdvertisement || icmp[1] != 0 || icmp[8] == 0xff || IcmpV6Checksum(ip6[8..24], ip6[24..40], icmp) != 0)
        {
            return false;
        }

        address = new Ip(IpFamily.IPv6, BinaryPrimitives.ReadUInt128BigEndian(icmp[8..]));
        Span<byte> mac = stackalloc byte[MacLength];
        if (!TryOption(icmp, TargetLinkLayerOption, mac))
        {
            frame[6..12].CopyTo(mac);
        }

        claimant = MacAddress.Read(mac);
        return !mac.SequenceEqual(ourMac);
    }

    /// <summary>
    /// The target of a Neighbor Solicitation sent to us (our MAC, or a multicast address) from another host,
    /// with the addresses to answer to. Only well-formed solicitations count: hop limit 255, code 0, no
    /// extension headers.
    /// </summary>
    public static bool TryReadNeighborSolicitation(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> ourMac, out Ip target)
    {
        target = default;
        if (frame.Length < 14 + 40 + 24
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherTypeIPv6
            || !((frame[0] == 0x33 && frame[1] == 0x33) || frame[..6].SequenceEqual(ourMac))
            || frame[6..12].SequenceEqual(ourMac))
        {
            return false;
        }

        var ip6 = frame[14..];
        var payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip6[4..]);
        if (ip6[0] >> 4 != 6 || ip6[6] != IcmpV6 || ip6[7] != 255 || payloadLength < 24 || payloadLength > ip6.Length - 40)
        {
            return false;
        }

        // RFC 4861 section 7.1.1: code 0, a valid checksum, a unicast target; from the unspecified address
        // (duplicate address detection) only to a solicited-node group.
        var source = ip6.Slice(8, 16);
        var destination = ip6.Slice(24, 16);
        var icmp = ip6.Slice(40, payloadLength);
        if (icmp[0] != NeighborSolicitation || icmp[1] != 0 || icmp[8] == 0xff
            || IcmpV6Checksum(source, destination, icmp) != 0
            || (source.IndexOfAnyExcept((byte)0) < 0 && !destination[..13].SequenceEqual(SolicitedNodePrefix)))
        {
            return false;
        }

        target = new Ip(IpFamily.IPv6, BinaryPrimitives.ReadUInt128BigEndian(icmp.Slice(8, 16)));
        return true;
    }

    /// <summary>
    /// Writes the Neighbor Advertisement answering a solicitation that <see cref="TryReadNeighborSolicitation"/>
    /// accepted; returns its length. Duplicate address detection (unspecified source) is answered to all nodes.
    /// </summary>
    /// <param name="source">
    /// The sending interface's link-local address (RFC 4861 section 7.2.4: an address assigned to the interface;
    /// the advertised one is not); empty for an interface without one, which then sends from the advertised address.
    /// </param>
    public static int WriteNeighborAdvertisement(ReadOnlySpan<byte> solicitation, ReadOnlySpan<byte> ourMac, ReadOnlySpan<byte> source, Span<byte> reply)
    {
        var ip6 = solicitation[14..];
        var asker = ip6.Slice(8, 16);
        var target = ip6.Slice(40 + 8, 16);
        var dad = asker.IndexOfAnyExcept((byte)0) < 0;
        Span<byte> destination = stackalloc byte[16];
        (dad ? AllNodes : asker).CopyTo(destination);

        // Answer to the link-layer address the solicitation carries, else to the frame's sender.
        Span<byte> askerMac = stackalloc byte[MacLength];
        if (dad)
        {
            MulticastMac(AllNodes, askerMac);
        }
        else if (!TryOption(ip6[40..(40 + BinaryPrimitives.ReadUInt16BigEndian(ip6[4..]))], SourceLinkLayerOption, askerMac))
        {
            solicitation.Slice(6, 6).CopyTo(askerMac);
        }

        WriteAdvertisement(reply, askerMac, ourMac, source, target, destination, solicited: !dad);
        return NeighborAdvertisementLength;
    }

    /// <summary>An unsolicited Neighbor Advertisement (Override set) to all nodes, for an address this node took over.</summary>
    /// <param name="source">As for <see cref="WriteNeighborAdvertisement"/>: the interface's link-local address, or empty.</param>
    public static byte[] UnsolicitedAdvertisement(Ip address, ReadOnlySpan<byte> ourMac, ReadOnlySpan<byte> source)
    {
        Span<byte> target = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(target, address.Value);
        var frame = new byte[NeighborAdvertisementLength];
        Span<byte> allNodesMac = stackalloc byte[MacLength];
        MulticastMac(AllNodes, allNodesMac);
        WriteAdvertisement(frame, allNodesMac, ourMac, source, target, AllNodes, solicited: false);
        return frame;
    }

    /// <summary>
    /// The solicited-node multicast group of an IPv6 address (ff02::1:ffXX:XXXX, its low 24 bits; RFC 4291
    /// section 2.7.1), where Neighbor Solicitations for it are sent.
    /// </summary>
    public static Ip SolicitedNodeGroup(Ip address) =>
        new(IpFamily.IPv6, new UInt128(0xff02_0000_0000_0000, 0x0000_0001_ff00_0000) | (address.Value & 0xff_ffff));

    private static void WriteArp(Span<byte> frame, ReadOnlySpan<byte> to, ReadOnlySpan<byte> from, ushort operation,
        ReadOnlySpan<byte> senderMac, ReadOnlySpan<byte> senderIp, ReadOnlySpan<byte> targetMac, ReadOnlySpan<byte> targetIp)
    {
        to.CopyTo(frame);
        from.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeArp);
        var arp = frame[14..];
        BinaryPrimitives.WriteUInt16BigEndian(arp, 1);
        BinaryPrimitives.WriteUInt16BigEndian(arp[2..], 0x0800);
        arp[4] = 6;
        arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp[6..], operation);
        senderMac.CopyTo(arp[8..]);
        senderIp.CopyTo(arp[14..]);
        targetMac.CopyTo(arp[18..]);
        targetIp.CopyTo(arp[24..]);
    }

    private static void WriteAdvertisement(Span<byte> frame, ReadOnlySpan<byte> toMac, ReadOnlySpan<byte> ourMac, ReadOnlySpan<byte> source,
        ReadOnlySpan<byte> target, ReadOnlySpan<byte> destination, bool solicited)
    {
        const int icmpLength = 32;
        toMac.CopyTo(frame);
        ourMac.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeIPv6);
        var ip6 = frame[14..];
        BinaryPrimitives.WriteUInt32BigEndian(ip6, 0x60000000); // version 6, no traffic class or flow label
        BinaryPrimitives.WriteUInt16BigEndian(ip6[4..], icmpLength);
        ip6[6] = IcmpV6;
        ip6[7] = 255; // RFC 4861: receivers drop neighbour discovery with any other hop limit
        (source.IsEmpty ? target : source).CopyTo(ip6[8..]);
        destination.CopyTo(ip6[24..]);
        var icmp = ip6.Slice(40, icmpLength);
        icmp.Clear();
        icmp[0] = NeighborAdvertisement;
        icmp[4] = (byte)((solicited ? 0x40 : 0) | 0x20); // S, and O: override caches that still hold the old owner
        target.CopyTo(icmp[8..]);
        icmp[24] = TargetLinkLayerOption;
        icmp[25] = 1; // length in units of 8 bytes
        ourMac.CopyTo(icmp[26..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], IcmpV6Checksum(ip6[8..24], ip6[24..40], icmp));
    }

    /// <summary>The link-layer address in the first option of this type after a solicitation's or advertisement's 24 fixed bytes.</summary>
    private static bool TryOption(ReadOnlySpan<byte> icmp, byte type, Span<byte> mac)
    {
        var options = icmp[24..];
        while (options.Length >= 8 && options[1] > 0 && options[1] * 8 <= options.Length)
        {
            if (options[0] == type)
            {
                options.Slice(2, 6).CopyTo(mac);
                return true;
            }

            options = options[(options[1] * 8)..];
        }

        return false;
    }

    /// <summary>33:33 followed by the low 32 bits of the IPv6 multicast address (RFC 2464).</summary>
    private static void MulticastMac(ReadOnlySpan<byte> group, Span<byte> mac)
    {
        mac[0] = 0x33;
        mac[1] = 0x33;
        group[12..].CopyTo(mac[2..]);
    }

    /// <summary>The Internet checksum over the IPv6 pseudo-header and the ICMPv6 message (RFC 8200 section 8.1).</summary>
    public static ushort IcmpV6Checksum(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, ReadOnlySpan<byte> icmp)
    {
        ulong sum = 0;
        sum += Sum(source) + Sum(destination) + (uint)icmp.Length + IcmpV6;
        sum += Sum(icmp);
        while (sum >> 16 != 0)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }

        return (ushort)~sum;

        static ulong Sum(ReadOnlySpan<byte> data)
        {
            ulong s = 0;
            for (var i = 0; i + 1 < data.Length; i += 2)
            {
                s += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
            }

            if (data.Length % 2 == 1)
            {
                s += (ulong)data[^1] << 8;
            }

            return s;
        }
    }
}
