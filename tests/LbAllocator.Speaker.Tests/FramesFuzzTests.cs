using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using LbAllocator.Core;
using PacketDotNet;
using Xunit.Abstractions;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// More than a million random, mutated and truncated frames through the parser the speaker answers with.
/// None may throw, and each must be accepted exactly when an independent reading (the RFC rules written
/// out plainly, fields read by PacketDotNet) says it is a question we should answer; every reply must parse.
/// </summary>
public class FramesFuzzTests(ITestOutputHelper output)
{
    private const int FrameCount = 1_100_000;
    private static readonly byte[] Ours = Convert.FromHexString("020000000001");

    // Valid questions to mutate: an ARP request, a Neighbor Solicitation, and a DAD probe.
    private static readonly byte[] ArpRequest = Convert.FromHexString(
        "ffffffffffff" + "020000000099" + "0806" + "0001080006040001" + "020000000099" + "c0000264" + "000000000000" + "c000020a");

    private static readonly byte[] Solicitation = FramesTests.WithChecksum(
        "3333ff00001002000000009986dd6000000000203aff20010db8000000000000000000000100ff0200000000000000000001ff000010"
        + "8700CSUM0000000020010db8000000000000000000000010" + "0101020000000099");

    private static readonly byte[] Probe = FramesTests.WithChecksum(
        "3333ff00001002000000009986dd6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff000010"
        + "8700CSUM0000000020010db8000000000000000000000010");

    [Fact]
    public void A_million_random_and_broken_frames_never_throw_and_are_judged_like_the_rfcs_say()
    {
        var random = new Random(20261125);
        var reply = new byte[Frames.NeighborAdvertisementLength];
        var (arp, ndp, questions) = (0, 0, 0);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < FrameCount; i++)
        {
            var frame = Next(random);
            var isArp = Frames.TryReadArpRequest(frame, Ours, out var arpTarget);
            var isNs = Frames.TryReadNeighborSolicitation(frame, Ours, out var nsTarget);
            var expectArp = ReferenceArpRequest(frame, out var expectedArpTarget);
            var expectNs = ReferenceSolicitation(frame, out var expectedNsTarget);
            if (isArp != expectArp || isNs != expectNs)
            {
                Assert.Fail($"frame {i} {Convert.ToHexStringLower(frame)}: ARP parser {isArp} reference {expectArp}; NS parser {isNs} reference {expectNs}");
            }

            if (isArp)
            {
                arp++;
                Assert.Equal(expectedArpTarget, arpTarget);
                Frames.WriteArpReply(frame, Ours, reply);
                var answer = (ArpPacket)Packet.ParsePacket(LinkLayers.Ethernet, reply[..Frames.ArpLength]).PayloadPacket;
                Assert.Equal(ArpOperation.Response, answer.Operation);
                Assert.Equal(ToAddress(arpTarget), answer.SenderProtocolAddress);
            }

            if (isNs)
            {
                ndp++;
                Assert.Equal(expectedNsTarget, nsTarget);
                Frames.WriteNeighborAdvertisement(frame, Ours, [], reply);
                var answer = (IcmpV6Packet)Packet.ParsePacket(LinkLayers.Ethernet, reply).PayloadPacket.PayloadPacket;
                Assert.True(answer.ValidIcmpChecksum);
                Assert.Equal(ToAddress(nsTarget), ((NdpNeighborAdvertisementPacket)answer.PayloadPacket).TargetAddress);
            }

            questions += isArp || isNs ? 1 : 0;
        }

        output.WriteLine($"{FrameCount:N0} frames in {clock.Elapsed.TotalSeconds:F1} s: {arp:N0} ARP requests and {ndp:N0} solicitations accepted, {FrameCount - questions:N0} rejected");
        // The mutations must leave enough valid questions for the comparison to mean something.
        Assert.InRange(arp, FrameCount / 50, FrameCount);
        Assert.InRange(ndp, FrameCount / 50, FrameCount);
    }

    /// <summary>A valid question mutated a little (bytes flipped, cut short, extended) or plain noise.</summary>
    private static byte[] Next(Random random)
    {
        var kind = random.Next(8);
        if (kind == 0)
        {
            var noise = new byte[random.Next(0, 130)];
            random.NextBytes(noise);
            if (noise.Length >= 14 && random.Next(2) == 0)
            {
                BinaryPrimitives.WriteUInt16BigEndian(noise.AsSpan(12), random.Next(2) == 0 ? (ushort)0x0806 : (ushort)0x86dd);
            }

            return noise;
        }

        var template = kind switch { <= 3 => ArpRequest, <= 5 => Solicitation, _ => Probe };
        var frame = (byte[])template.Clone();
        var mutations = random.Next(0, 4);
        for (var m = 0; m < mutations; m++)
        {
            switch (random.Next(5))
            {
                case 0 or 1:
                    frame[random.Next(frame.Length)] = (byte)random.Next(256);
                    break;
                case 2:
                    frame[random.Next(frame.Length)] ^= (byte)(1 << random.Next(8));
                    break;
                case 3:
                    frame = frame[..random.Next(frame.Length + 1)];
                    break;
                default:
                    var longer = new byte[frame.Length + random.Next(1, 40)];
                    random.NextBytes(longer);
                    frame.CopyTo(longer, 0);
                    frame = longer;
                    break;
            }

            if (frame.Length == 0)
            {
                break;
            }
        }

        // Half the mutated IPv6 frames get a correct checksum again, so the other rules are exercised too.
        if (template != ArpRequest && frame.Length >= 14 + 40 + 4 && random.Next(2) == 0)
        {
            var length = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(18));
            if (length >= 4 && 54 + length <= frame.Length)
            {
                frame[56] = frame[57] = 0;
                BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(56), ReferenceChecksum(frame, length));
            }
        }

        return frame;
    }

    /// <summary>RFC 826 with RFC 5227 in mind: an Ethernet/IPv4 request, broadcast or to us, not from us, not gratuitous.</summary>
    private static bool ReferenceArpRequest(byte[] frame, out Ip target)
    {
        target = default;
        if (frame.Length < 42 || frame[12] != 0x08 || frame[13] != 0x06)
        {
            return false;
        }

        var destination = frame.AsSpan(0, 6);
        var source = frame.AsSpan(6, 6);
        var toUs = destination.SequenceEqual(Ours) || destination.ToArray().All(b => b == 0xff);
        var arp = (ArpPacket)Packet.ParsePacket(LinkLayers.Ethernet, frame).PayloadPacket;
        if (!toUs || source.SequenceEqual(Ours) || arp.HardwareAddressType != LinkLayers.Ethernet || arp.ProtocolAddressType != EthernetType.IPv4
            || arp.HardwareAddressLength != 6 || arp.ProtocolAddressLength != 4 || arp.Operation != ArpOperation.Request
            || arp.SenderProtocolAddress.Equals(arp.TargetProtocolAddress))
        {
            return false;
        }

        target = Ip.Parse(arp.TargetProtocolAddress.ToString());
        return true;
    }

    /// <summary>RFC 4861 section 7.1.1, for a solicitation with no extension headers sent to a multicast group or to us.</summary>
    private static bool ReferenceSolicitation(byte[] frame, out Ip target)
    {
        target = default;
        if (frame.Length < 14 + 40 + 24 || frame[12] != 0x86 || frame[13] != 0xdd)
        {
            return false;
        }

        var toUs = (frame[0] == 0x33 && frame[1] == 0x33) || frame.AsSpan(0, 6).SequenceEqual(Ours);
        var length = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(18));
        if (!toUs || frame.AsSpan(6, 6).SequenceEqual(Ours) || frame[14] >> 4 != 6 || frame[20] != 58 || frame[21] != 255
            || length < 24 || 54 + length > frame.Length)
        {
            return false;
        }

        var source = new IPAddress(frame.AsSpan(22, 16));
        var targetAddress = new IPAddress(frame.AsSpan(62, 16));
        var unspecifiedSource = source.Equals(IPAddress.IPv6None);
        var solicitedNode = frame.AsSpan(38, 13).SequenceEqual(Convert.FromHexString("ff0200000000000000000001ff"));
        if (frame[54] != 135 || frame[55] != 0 || ReferenceChecksum(frame, length) != 0 || targetAddress.IsIPv6Multicast
            || (unspecifiedSource && !solicitedNode))
        {
            return false;
        }

        target = Ip.Parse(targetAddress.ToString());
        return true;
    }

    /// <summary>The ICMPv6 checksum the plain way: the one's complement sum of pseudo-header and message, in 16-bit words.</summary>
    private static ushort ReferenceChecksum(byte[] frame, int length)
    {
        var words = new List<byte>();
        words.AddRange(frame.AsSpan(22, 32).ToArray()); // source and destination addresses
        words.AddRange([0, 0, (byte)(length >> 8), (byte)length, 0, 0, 0, 58]);
        words.AddRange(frame.AsSpan(54, length).ToArray());
        if (words.Count % 2 == 1)
        {
            words.Add(0);
        }

        var sum = 0u;
        for (var i = 0; i < words.Count; i += 2)
        {
            sum += (uint)((words[i] << 8) | words[i + 1]);
            sum = (sum & 0xffff) + (sum >> 16);
        }

        return (ushort)~sum;
    }

    private static IPAddress ToAddress(Ip ip) => IPAddress.Parse(ip.ToString());
}
