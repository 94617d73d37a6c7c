using System.Net;
using System.Net.NetworkInformation;
using LbAllocator.Core;
using PacketDotNet;

namespace LbAllocator.Speaker.Tests;

/// <summary>Crafted frames in, frames out, byte for byte; PacketDotNet reads our output as an independent check.</summary>
public class FramesTests
{
    private static readonly byte[] Ours = Convert.FromHexString("020000000001");
    private static readonly byte[] Asker = Convert.FromHexString("020000000099");

    // The sending interface's link-local address, fe80::ff:fe00:1 (from its MAC).
    private const string LinkLocalHex = "fe80000000000000000000fffe000001";

    private static readonly byte[] LinkLocal = Convert.FromHexString(LinkLocalHex);

    // ARP request "who has 192.0.2.10? tell 192.0.2.100", broadcast, from 02:00:00:00:00:99.
    private const string ArpRequest =
        "ffffffffffff" + "020000000099" + "0806"
        + "0001" + "0800" + "06" + "04" + "0001"
        + "020000000099" + "c0000264" + "000000000000" + "c000020a";

    private const string ArpReply =
        "020000000099" + "020000000001" + "0806"
        + "0001" + "0800" + "06" + "04" + "0002"
        + "020000000001" + "c000020a" + "020000000099" + "c0000264";

    // Neighbor Solicitation for 2001:db8::10 from 2001:db8::100 to the solicited-node group ff02::1:ff00:10,
    // with a source link-layer option.
    private const string Solicitation =
        "3333ff000010" + "020000000099" + "86dd"
        + "60000000" + "0020" + "3a" + "ff"
        + "20010db8000000000000000000000100" + "ff0200000000000000000001ff000010"
        + "87" + "00" + "CSUM" + "00000000" + "20010db8000000000000000000000010"
        + "01" + "01" + "020000000099";

    // From the interface's link-local address (RFC 4861 section 7.2.4: an address of the sending interface).
    private const string Advertisement =
        "020000000099" + "020000000001" + "86dd"
        + "60000000" + "0020" + "3a" + "ff"
        + LinkLocalHex + "20010db8000000000000000000000100"
        + "88" + "00" + "CSUM" + "60000000" + "20010db8000000000000000000000010"
        + "02" + "01" + "020000000001";

    [Fact]
    public void Arp_request_gets_a_reply_byte_for_byte()
    {
        var request = Convert.FromHexString(ArpRequest);
        Assert.True(Frames.TryReadArpRequest(request, Ours, out var target));
        Assert.Equal(Ip.Parse("192.0.2.10"), target);
        var reply = new byte[Frames.ArpLength];
        Assert.Equal(Frames.ArpLength, Frames.WriteArpReply(request, Ours, reply));
        Assert.Equal(ArpReply, Convert.ToHexStringLower(reply));

        var parsed = Assert.IsType<ArpPacket>(Packet.ParsePacket(LinkLayers.Ethernet, reply).PayloadPacket);
        Assert.Equal(ArpOperation.Response, parsed.Operation);
        Assert.Equal(IPAddress.Parse("192.0.2.10"), parsed.SenderProtocolAddress);
        Assert.Equal(new PhysicalAddress(Ours), parsed.SenderHardwareAddress);
        Assert.Equal(IPAddress.Parse("192.0.2.100"), parsed.TargetProtocolAddress);
    }

    [Fact]
    public void Arp_request_to_our_mac_is_answered_too()
    {
        var request = Convert.FromHexString(ArpRequest);
        Ours.CopyTo(request, 0);
        Assert.True(Frames.TryReadArpRequest(request, Ours, out _));
    }

    [Theory]
    [InlineData("reply", 20, "02")] // operation 2
    [InlineData("to another host", 0, "020000000077")]
    [InlineData("sent by us", 6, "020000000001")]
    [InlineData("gratuitous (sender is target)", 28, "c000020a")]
    [InlineData("not Ethernet/IPv4", 14, "0006")]
    [InlineData("not ARP", 12, "0800")]
    public void Arp_frames_that_are_not_questions_to_us_are_ignored(string why, int offset, string bytes)
    {
        var frame = Convert.FromHexString(ArpRequest);
        Convert.FromHexString(bytes).CopyTo(frame, offset);
        Assert.False(Frames.TryReadArpRequest(frame, Ours, out _), why);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(13)]
    [InlineData(41)]
    public void Truncated_arp_is_ignored(int length) =>
        Assert.False(Frames.TryReadArpRequest(Convert.FromHexString(ArpRequest).AsSpan(0, length), Ours, out _));

    [Fact]
    public void Gratuitous_arp_request_and_reply()
    {
        var ip = Ip.Parse("192.0.2.10");
        Assert.Equal(
            "ffffffffffff" + "020000000001" + "0806" + "0001080006040001" + "020000000001" + "c000020a" + "000000000000" + "c000020a",
            Convert.ToHexStringLower(Frames.GratuitousArp(ip, Ours, reply: false)));
        Assert.Equal(
            "ffffffffffff" + "020000000001" + "0806" + "0001080006040002" + "020000000001" + "c000020a" + "ffffffffffff" + "c000020a",
            Convert.ToHexStringLower(Frames.GratuitousArp(ip, Ours, reply: true)));
    }

    [Fact]
    public void Neighbor_solicitation_gets_an_advertisement_byte_for_byte()
    {
        var solicitation = WithChecksum(Solicitation);
        Assert.True(Frames.TryReadNeighborSolicitation(solicitation, Ours, out var target));
        Assert.Equal(Ip.Parse("2001:db8::10"), target);
        var reply = new byte[Frames.NeighborAdvertisementLength];
        Assert.Equal(Frames.NeighborAdvertisementLength, Frames.WriteNeighborAdvertisement(solicitation, Ours, LinkLocal, reply));
        Assert.Equal(Convert.ToHexStringLower(WithChecksum(Advertisement)), Convert.ToHexStringLower(reply));

        var ip6 = Assert.IsType<IPv6Packet>(Packet.ParsePacket(LinkLayers.Ethernet, reply).PayloadPacket);
        Assert.Equal(IPAddress.Parse("fe80::ff:fe00:1"), ip6.SourceAddress);
        Assert.Equal(IPAddress.Parse("2001:db8::100"), ip6.DestinationAddress);
        var icmp = Assert.IsType<IcmpV6Packet>(ip6.PayloadPacket);
        Assert.Equal(IcmpV6Type.NeighborAdvertisement, icmp.Type);
        Assert.True(icmp.ValidIcmpChecksum);
    }

    [Fact]
    public void An_interface_without_a_link_local_address_answers_from_the_advertised_one()
    {
        var reply = new byte[Frames.NeighborAdvertisementLength];
        Frames.WriteNeighborAdvertisement(WithChecksum(Solicitation), Ours, [], reply);
        Assert.Equal(
            Convert.ToHexStringLower(WithChecksum(Advertisement.Replace(LinkLocalHex, "20010db8000000000000000000000010", StringComparison.Ordinal))),
            Convert.ToHexStringLower(reply));
        Assert.True(Assert.IsType<IcmpV6Packet>(Packet.ParsePacket(LinkLayers.Ethernet, reply).PayloadPacket.PayloadPacket).ValidIcmpChecksum);
    }

    [Fact]
    public void Unicast_neighbor_solicitation_to_our_mac_is_answered()
    {
        // As a host re-checking reachability sends it (RFC 4861 section 7.3.3): to the address and MAC it has cached.
        var unicast = WithChecksum("020000000001" + Solicitation[12..].Replace("ff0200000000000000000001ff000010", "20010db8000000000000000000000010", StringComparison.Ordinal));
        Assert.True(Frames.TryReadNeighborSolicitation(unicast, Ours, out var target));
        Assert.Equal(Ip.Parse("2001:db8::10"), target);
        var reply = new byte[Frames.NeighborAdvertisementLength];
        Frames.WriteNeighborAdvertisement(unicast, Ours, LinkLocal, reply);
        Assert.Equal(Convert.ToHexStringLower(WithChecksum(Advertisement)), Convert.ToHexStringLower(reply));
    }

    [Theory]
    [InlineData("2001:db8::10", "ff02::1:ff00:10")]
    [InlineData("2001:db8::1:2345:6789", "ff02::1:ff45:6789")]
    [InlineData("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "ff02::1:ffff:ffff")]
    public void Solicited_node_group_keeps_the_low_24_bits(string address, string group) =>
        Assert.Equal(Ip.Parse(group), Frames.SolicitedNodeGroup(Ip.Parse(address)));

    [Fact]
    public void Duplicate_address_detection_is_answered_to_all_nodes_without_the_solicited_flag()
    {
        var dad = WithChecksum(Solicitation.Replace("20010db8000000000000000000000100", "00000000000000000000000000000000", StringComparison.Ordinal)
            .Replace("0101020000000099", "", StringComparison.Ordinal).Replace("0020", "0018", StringComparison.Ordinal));
        Assert.True(Frames.TryReadNeighborSolicitation(dad, Ours, out _));
        var reply = new byte[Frames.NeighborAdvertisementLength];
        Frames.WriteNeighborAdvertisement(dad, Ours, LinkLocal, reply);
        Assert.Equal("333300000001", Convert.ToHexStringLower(reply.AsSpan(0, 6)));
        Assert.Equal("ff020000000000000000000000000001", Convert.ToHexStringLower(reply.AsSpan(14 + 24, 16)));
        Assert.Equal(0x20, reply[14 + 40 + 4]); // Override only
        Assert.True(Assert.IsType<IcmpV6Packet>(Packet.ParsePacket(LinkLayers.Ethernet, reply).PayloadPacket.PayloadPacket).ValidIcmpChecksum);
    }

    [Theory]
    [InlineData("hop limit not 255", 21, "40")]
    [InlineData("not ICMPv6", 20, "11")]
    [InlineData("not a solicitation", 54, "88")]
    [InlineData("unicast to another host", 0, "020000000077")]
    [InlineData("sent by us", 6, "020000000001")]
    [InlineData("bad checksum", 56, "0000")]
    [InlineData("code not 0", 55, "01")]
    [InlineData("multicast target", 62, "ff02")]
    [InlineData("unspecified source to a unicast destination", 22, "00000000000000000000000000000000" + "20010db8000000000000000000000001")]
    public void Neighbor_frames_that_are_not_questions_to_us_are_ignored(string why, int offset, string bytes)
    {
        var frame = WithChecksum(Solicitation);
        Convert.FromHexString(bytes).CopyTo(frame, offset);
        if (why is not "bad checksum" and not "not ICMPv6")
        {
            FixChecksum(frame); // so only the field under test is wrong
        }

        Assert.False(Frames.TryReadNeighborSolicitation(frame, Ours, out _), why);
    }

    [Fact]
    public void Unsolicited_advertisement_goes_to_all_nodes_with_override_from_the_link_local_address()
    {
        var frame = Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Ours, LinkLocal);
        Assert.Equal(Convert.ToHexStringLower(WithChecksum(Unsolicited(LinkLocalHex))), Convert.ToHexStringLower(frame));
        // Without a link-local address, from the advertised one.
        frame = Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Ours, []);
        Assert.Equal(Convert.ToHexStringLower(WithChecksum(Unsolicited("20010db8000000000000000000000010"))), Convert.ToHexStringLower(frame));

        static string Unsolicited(string source) =>
            "333300000001" + "020000000001" + "86dd" + "60000000" + "0020" + "3a" + "ff"
            + source + "ff020000000000000000000000000001"
            + "88" + "00" + "CSUM" + "20000000" + "20010db8000000000000000000000010" + "02" + "01" + "020000000001";
    }

    [Fact]
    public void Checksum_matches_a_known_value()
    {
        // RFC 1071 worked example bytes, placed as an ICMPv6 body between two zero addresses: the sum
        // 00 01 f2 03 f4 f5 f6 f7 folds to ddf2; plus length 8 and next header 58 makes de34, complemented 21cb.
        var sum = Frames.IcmpV6Checksum(new byte[16], new byte[16], Convert.FromHexString("0001f203f4f5f6f7"));
        Assert.Equal(0x21cb, sum);
    }

    [Fact]
    public void Arp_probe_is_a_request_from_sender_address_zero_byte_for_byte()
    {
        var probe = Frames.ArpProbe(Ip.Parse("192.0.2.10"), Ours);
        Assert.Equal(
            "ffffffffffff" + "020000000001" + "0806" + "0001" + "0800" + "06" + "04" + "0001"
            + "020000000001" + "00000000" + "000000000000" + "c000020a",
            Convert.ToHexStringLower(probe));
        var parsed = Assert.IsType<ArpPacket>(Packet.ParsePacket(LinkLayers.Ethernet, probe).PayloadPacket);
        Assert.Equal(ArpOperation.Request, parsed.Operation);
        Assert.Equal(IPAddress.Any, parsed.SenderProtocolAddress);

        // Another speaker owning the address answers it (RFC 5227: the owner defends); it claims nothing.
        Assert.True(Frames.TryReadArpRequest(probe, Asker, out var target));
        Assert.Equal(Ip.Parse("192.0.2.10"), target);
        Assert.False(Frames.TryReadClaim(probe, Asker, out _, out _));
    }

    [Fact]
    public void Duplicate_address_probe_is_a_solicitation_from_the_unspecified_address_to_the_solicited_node_group()
    {
        var probe = Frames.DuplicateAddressProbe(Ip.Parse("2001:db8::12:3456"), Ours);
        Assert.Equal(14 + 40 + 24, probe.Length);
        Assert.Equal("3333ff123456" + "020000000001" + "86dd", Convert.ToHexStringLower(probe.AsSpan(0, 14)));
        var ip6 = Assert.IsType<IPv6Packet>(Packet.ParsePacket(LinkLayers.Ethernet, probe).PayloadPacket);
        Assert.Equal(IPAddress.IPv6Any, ip6.SourceAddress);
        Assert.Equal(IPAddress.Parse("ff02::1:ff12:3456"), ip6.DestinationAddress);
        Assert.Equal(255, ip6.HopLimit);
        var icmp = Assert.IsType<IcmpV6Packet>(ip6.PayloadPacket);
        Assert.True(icmp.ValidIcmpChecksum);
        var solicitation = Assert.IsType<NdpNeighborSolicitationPacket>(icmp.PayloadPacket);
        Assert.Equal(IPAddress.Parse("2001:db8::12:3456"), solicitation.TargetAddress);
        Assert.Empty(solicitation.OptionsCollection); // RFC 4862: no link-layer option from the unspecified address

        // A speaker owning the address answers it as duplicate address detection.
        Assert.True(Frames.TryReadNeighborSolicitation(probe, Asker, out var target));
        Assert.Equal(Ip.Parse("2001:db8::12:3456"), target);
    }

    [Fact]
    public void Claims_are_read_from_arp_senders_and_advertisement_targets_of_other_hosts()
    {
        AssertClaim(Convert.FromHexString(ArpRequest), "192.0.2.100", "02:00:00:00:00:99"); // the asker uses its own address
        AssertClaim(Frames.GratuitousArp(Ip.Parse("192.0.2.10"), Asker, reply: false), "192.0.2.10", "02:00:00:00:00:99");
        AssertClaim(Frames.GratuitousArp(Ip.Parse("192.0.2.10"), Asker, reply: true), "192.0.2.10", "02:00:00:00:00:99");
        AssertClaim(Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Asker, LinkLocal), "2001:db8::10", "02:00:00:00:00:99");

        // An advertisement's target link-layer option names the claimant, whatever the frame's source.
        var relayed = Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Asker, LinkLocal);
        Convert.FromHexString("0200000000aa").CopyTo(relayed, 6);
        AssertClaim(relayed, "2001:db8::10", "02:00:00:00:00:99");

        // Our own frames, probes, solicitations and broken advertisements claim nothing.
        Assert.False(Frames.TryReadClaim(Frames.GratuitousArp(Ip.Parse("192.0.2.10"), Ours, reply: true), Ours, out _, out _));
        Assert.False(Frames.TryReadClaim(Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Ours, LinkLocal), Ours, out _, out _));
        Assert.False(Frames.TryReadClaim(Frames.ArpProbe(Ip.Parse("192.0.2.10"), Asker), Ours, out _, out _));
        Assert.False(Frames.TryReadClaim(WithChecksum(Solicitation), Ours, out _, out _));
        var corrupt = Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Asker, LinkLocal);
        corrupt[^1] ^= 1;
        Assert.False(Frames.TryReadClaim(corrupt, Ours, out _, out _));
        var hopped = Frames.UnsolicitedAdvertisement(Ip.Parse("2001:db8::10"), Asker, LinkLocal);
        hopped[14 + 7] = 64;
        Assert.False(Frames.TryReadClaim(hopped, Ours, out _, out _));
        Assert.False(Frames.TryReadClaim(Convert.FromHexString(ArpRequest).AsSpan(0, 41), Ours, out _, out _));
    }

    private static void AssertClaim(byte[] frame, string address, string mac)
    {
        Assert.True(Frames.TryReadClaim(frame, Ours, out var claimed, out var claimant));
        Assert.Equal(Ip.Parse(address), claimed);
        Assert.Equal(mac, claimant.ToString());
    }

    /// <summary>Fills the CSUM placeholder with the ICMPv6 checksum computed independently by PacketDotNet.</summary>
    internal static byte[] WithChecksum(string hex)
    {
        var frame = Convert.FromHexString(hex.Replace("CSUM", "0000", StringComparison.Ordinal));
        FixChecksum(frame);
        return frame;
    }

    /// <summary>Recomputes the ICMPv6 checksum of an Ethernet/IPv6/ICMPv6 frame in place, with PacketDotNet.</summary>
    internal static void FixChecksum(byte[] frame)
    {
        frame[56] = frame[57] = 0;
        var icmp = (IcmpV6Packet)Packet.ParsePacket(LinkLayers.Ethernet, frame).PayloadPacket.PayloadPacket;
        icmp.UpdateIcmpChecksum(); // writes through to the frame: PacketDotNet's packets are views of one buffer
        Assert.True(icmp.ValidIcmpChecksum);
        Assert.NotEqual(0, icmp.Checksum);
    }
}
