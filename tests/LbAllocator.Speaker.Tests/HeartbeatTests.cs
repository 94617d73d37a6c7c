namespace LbAllocator.Speaker.Tests;

/// <summary>The heartbeat frame: byte for byte, round trip, and every malformed variant refused without a crash.</summary>
public class HeartbeatTests
{
    private static readonly byte[] Ours = [0x02, 0, 0, 0, 0, 0x01];
    private static readonly byte[] Theirs = [0x02, 0, 0, 0, 0, 0x02];

    private static readonly Heartbeat Sample = new("node-1.example", 0x01020304, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(400), Leaving: false);

    [Fact]
    public void The_frame_is_a_broadcast_with_the_local_experimental_ethertype_and_the_documented_layout()
    {
        var frame = Write(Sample, Theirs);
        Assert.Equal(60, frame.Length); // padded to the Ethernet minimum
        Assert.Equal(
            "ffffffffffff" + "020000000002" + "88b5" + "4c424842" + "01" + "00" + "0064" + "0190" + "01020304" + "0e" + Convert.ToHexStringLower("node-1.example"u8),
            Convert.ToHexStringLower(frame.AsSpan(0, 14 + 15 + 14)));
        Assert.All(frame[(14 + 15 + 14)..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void A_frame_reads_back_as_written_and_a_long_name_makes_a_longer_frame()
    {
        var leaving = Sample with { Node = new string('a', 253), Leaving = true };
        var frame = Write(leaving, Theirs);
        Assert.Equal(14 + 15 + 253, frame.Length);
        Assert.True(Heartbeat.TryRead(frame, Ours, out var read));
        Assert.Equal(leaving, read);
        Assert.True(Heartbeat.TryRead(Write(Sample, Theirs), Ours, out read));
        Assert.Equal(Sample, read);
    }

    [Fact]
    public void Our_own_heartbeat_coming_back_through_the_capture_is_not_a_peer()
    {
        Assert.False(Heartbeat.TryRead(Write(Sample, Ours), Ours, out _));
    }

    [Theory]
    [InlineData(12, 0x00)] // another EtherType
    [InlineData(14, 0x00)] // magic
    [InlineData(18, 0x02)] // version
    [InlineData(20, 0x00, 21, 0x00)] // interval zero
    [InlineData(22, 0x00, 23, 0x10)] // dead interval below the interval
    [InlineData(28, 0x00)] // empty name
    [InlineData(28, 0xff)] // name longer than the frame
    [InlineData(29, (int)'A')] // not a node name (upper case)
    [InlineData(29, 0xc3)] // not ASCII
    public void Malformed_frames_are_refused(int at, int value, int at2 = -1, int value2 = 0)
    {
        var frame = Write(Sample, Theirs);
        frame[at] = (byte)value;
        if (at2 >= 0)
        {
            frame[at2] = (byte)value2;
        }

        Assert.False(Heartbeat.TryRead(frame, Ours, out _));
    }

    [Fact]
    public void Every_truncation_and_random_bytes_never_crash_and_never_invent_a_name()
    {
        var frame = Write(Sample, Theirs);
        for (var length = 0; length < frame.Length; length++)
        {
            if (Heartbeat.TryRead(frame.AsSpan(0, length), Ours, out var read))
            {
                Assert.Equal(Sample, read); // only padding was cut
            }
        }

        var random = new Random(12);
        var noise = new byte[300];
        for (var i = 0; i < 100_000; i++)
        {
            random.NextBytes(noise);
            noise[12] = 0x88;
            noise[13] = 0xb5;
            if (random.Next(2) == 0)
            {
                "LBHB\u0001"u8.CopyTo(noise.AsSpan(14));
            }

            if (Heartbeat.TryRead(noise.AsSpan(0, random.Next(noise.Length)), Ours, out var read))
            {
                Assert.Matches("^[a-z0-9.-]{1,253}$", read.Node);
                Assert.True(read.DeadInterval >= read.Interval && read.Interval > TimeSpan.Zero);
            }
        }
    }

    private static byte[] Write(Heartbeat heartbeat, byte[] mac)
    {
        var buffer = new byte[Heartbeat.MaxLength];
        return buffer[..heartbeat.Write(mac, buffer)];
    }
}
