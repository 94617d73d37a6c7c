using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using LbAllocator.Speaker;
using SharpPcap;
using SharpPcap.LibPcap;

/// <summary>
/// The client side of the benchmark, run inside the client namespace (arping there takes whole seconds
/// as its interval only): ARP requests sent and replies captured with libpcap, the same way whoever answers.
/// </summary>
internal static class Probe
{
    public static int Run(string[] args)
    {
        var mode = args[1];
        var target = IPAddress.Parse(args[2]);
        using var device = LibPcapLiveDeviceList.New().First(d => d.Name == "eth0");
        device.Open(new DeviceConfiguration { Mode = DeviceModes.None, Immediate = true, ReadTimeout = 10 });
        device.Filter = $"arp and arp[6:2] = 2 and arp[14:4] = 0x{BinaryPrimitives.ReadUInt32BigEndian(target.GetAddressBytes()):x8}";
        var request = Request(device, target);
        long replies = 0;
        var replied = new SemaphoreSlim(0);
        device.OnPacketArrival += (_, _) =>
        {
            Interlocked.Increment(ref replies);
            replied.Release();
        };
        device.StartCapture();
        Thread.Sleep(200);
        switch (mode)
        {
            case "latency":
                // One request at a time: the round trip to whoever answers, in milliseconds.
                for (var i = 0; i < int.Parse(args[3], CultureInfo.InvariantCulture); i++)
                {
                    Drain(replied); // a late reply to an earlier request must not end this round trip
                    var start = Stopwatch.GetTimestamp();
                    device.SendPacket(request);
                    if (replied.Wait(100))
                    {
                        Console.WriteLine(Stopwatch.GetElapsedTime(start).TotalMilliseconds.ToString("F4", CultureInfo.InvariantCulture));
                    }

                    Thread.Sleep(2);
                }

                break;
            case "flood":
                // Paced requests at the asked rate for the asked time; prints sent, answered, achieved rate.
                var rate = double.Parse(args[3], CultureInfo.InvariantCulture);
                var seconds = double.Parse(args[4], CultureInfo.InvariantCulture);
                var total = (long)(rate * seconds);
                var began = Stopwatch.GetTimestamp();
                for (long i = 0; i < total; i++)
                {
                    while (Stopwatch.GetElapsedTime(began).TotalSeconds < i / rate)
                    {
                        Thread.SpinWait(20);
                    }

                    device.SendPacket(request);
                }

                var elapsed = Stopwatch.GetElapsedTime(began).TotalSeconds;
                Thread.Sleep(1000);
                Console.WriteLine(FormattableString.Invariant($"{total} {Interlocked.Read(ref replies)} {total / elapsed:F0}"));
                break;
        }

        device.StopCapture();
        return 0;
    }

    private static void Drain(SemaphoreSlim replied)
    {
        while (replied.Wait(0))
        {
        }
    }

    private static byte[] Request(LibPcapLiveDevice device, IPAddress target)
    {
        var mac = device.MacAddress!.GetAddressBytes();
        var frame = new byte[42];
        frame.AsSpan(0, 6).Fill(0xff);
        mac.CopyTo(frame, 6);
        frame[12] = 0x08;
        frame[13] = 0x06;
        byte[] header = [0, 1, 8, 0, 6, 4, 0, 1];
        header.CopyTo(frame, 14);
        mac.CopyTo(frame, 22);
        IPAddress.Parse("192.0.2.100").GetAddressBytes().CopyTo(frame, 28); // the client's address in the lab
        target.GetAddressBytes().CopyTo(frame, 38);
        return frame;
    }
}
