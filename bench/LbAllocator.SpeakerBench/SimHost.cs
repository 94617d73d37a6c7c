using System.Diagnostics;
using System.Globalization;
using LbAllocator.Speaker;
using LbAllocator.Speaker.Lan;
using SharpPcap;
using SharpPcap.LibPcap;

/// <summary>
/// The simulated speakers' process (`lan-sim`), run by <see cref="LanScale"/> inside a namespace of its own whose eth0
/// is a port of the lab's LAN bridge: a <see cref="SimSegment"/> whose wire is that interface, through libpcap, every
/// message signed and checked with the cluster's keys (handed in on stdin, as read from the Secret through the API).
/// Prints its tallies once a second ("status ..."); on stdin, "census" asks how many have joined, a closed stdin stops it.
/// `lan-sim --members N [--interface eth0] [--join-rate R] [--offline]`: --offline runs the memberships with no wire at
/// all, to weigh the simulation alone.
/// </summary>
internal static class SimHost
{
    public const ulong FirstMac = 0x02_5e_00_00_00_00UL;

    public static int Run(string[] args)
    {
        var members = int.Parse(Option(args, "--members") ?? "1000", CultureInfo.InvariantCulture);
        var joinRate = double.Parse(Option(args, "--join-rate") ?? "5", CultureInfo.InvariantCulture);
        var offline = args.Contains("--offline");
        var options = new SpeakerOptions();
        var segment = new SimSegment(members, "sim", FirstMac, options.HeartbeatInterval, options.DeadInterval, joinRate);
        using var simulated = segment;
        using var wire = offline ? null : new Wire(Option(args, "--interface") ?? "eth0", ReadKeys(), segment);
        segment.Start();
        Console.WriteLine($"started {members} simulated speakers, joining {joinRate}/s; interval {options.HeartbeatInterval.TotalMilliseconds} ms, dead {options.DeadInterval.TotalMilliseconds} ms");
        var commands = new Thread(() =>
        {
            while (Console.ReadLine() is { } line)
            {
                if (line == "census")
                {
                    Console.WriteLine("census " + segment.Census(TimeSpan.FromSeconds(10)));
                }
            }

            segment.Stop();
            Environment.Exit(0);
        }) { IsBackground = true };
        commands.Start();
        var began = Stopwatch.GetTimestamp();
        for (var second = 1; ; second++)
        {
            Thread.Sleep(1000);
            if (second % 10 == 0)
            {
                Console.WriteLine("cost " + segment.CostText() + "; in memory " + segment.KindsText());
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"status {Stopwatch.GetElapsedTime(began).TotalSeconds:F3} {segment.MemoryUnicast} {segment.MemoryBroadcastCopies} {segment.WireSent} {segment.WireSentBroadcast} {segment.WireReceived} {wire?.Rejected ?? 0} {segment.SlotsLate} {wire?.Dropped ?? 0} {segment.Rejoins} {segment.TakeMaxLag():F0} {segment.TakeMaxBacklog()}"));
        }
    }

    /// <summary>The Secret's entries, one "NAME BASE64" a line, ended by an empty line.</summary>
    private static LanKeys ReadKeys()
    {
        var data = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        while (Console.ReadLine() is { Length: > 0 } line)
        {
            var parts = line.Split(' ');
            data[parts[0]] = Convert.FromBase64String(parts[1]);
        }

        return LanKeys.From(data, out var problem) ?? throw new InvalidOperationException($"the key Secret cannot sign: {problem}");
    }

    private static string? Option(string[] args, string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

    /// <summary>The interface: one handle reads (its own thread, inbound 0x88B5 only), one sends.</summary>
    private sealed class Wire : IDisposable
    {
        private readonly LibPcapLiveDevice _reader;
        private readonly LibPcapLiveDevice _sender;
        private readonly LanKeys _keys;
        private readonly SimSegment _segment;
        private readonly byte[] _frame = new byte[LanFrames.MaxFrame];

        public Wire(string name, LanKeys keys, SimSegment segment)
        {
            _keys = keys;
            _segment = segment;
            _reader = LibPcapLiveDeviceList.New().FirstOrDefault(d => d.Name == name) ?? throw new InvalidOperationException($"interface {name} not found");
            _reader.Open(new DeviceConfiguration { Mode = DeviceModes.Promiscuous, Immediate = true, Snaplen = LanFrames.MaxFrame, BufferSize = 8 << 20, ReadTimeout = 100 });
            _reader.Filter = $"inbound and ether proto 0x{LanFrames.EtherType:x4}";
            _reader.OnPacketArrival += (_, e) => Read(e.Data);
            _sender = new LibPcapLiveDevice(_reader.Interface!);
            _sender.Open(new DeviceConfiguration { Mode = DeviceModes.None, Immediate = true });
            segment.Wire = Send;
            _reader.StartCapture();
        }

        public long Rejected { get; private set; }

        public long Dropped => _reader.Statistics?.DroppedPackets ?? 0;

        public void Dispose()
        {
            _reader.StopCapture();
            _reader.Dispose();
            _sender.Dispose();
        }

        private void Send(LanMessage message, MacAddress from, MacAddress to) =>
            _sender.SendPacket(_frame.AsSpan(0, LanFrames.Write(message, from, to, _keys, _frame)));

        private void Read(ReadOnlySpan<byte> frame)
        {
            var read = LanFrames.TryRead(frame, _keys, out var message, out var source);
            if (read == LanRead.Ok && !_segment.IsSimulated(source))
            {
                _segment.FromWire(message!, source, MacAddress.Read(frame));
            }
            else if (read != LanRead.Ok && read != LanRead.Foreign)
            {
                Rejected++;
            }
        }
    }
}
