using System.Globalization;

namespace LbAllocator.NetTests;

/// <summary>What a hostile or broken segment does to the speakers: frames captured and replayed, forged, flooded, dropped at a switch port.</summary>
public sealed partial class Lab
{
    /// <summary>
    /// The speakers' messages the node sends for <paramref name="span"/>, as they went out (a pcap file, deleted with
    /// the lab). Immediate mode and a write per packet: otherwise libpcap holds up to a second of frames, lost to the kill.
    /// </summary>
    public async Task<string> CaptureSpeakerFramesAsync(string node, TimeSpan span)
    {
        var file = Path.Combine(_dir, $"{node}-{Guid.NewGuid():N}.pcap");
        using (var capture = await Shell.CaptureAsync(NodeNs(node), "-w", file, "--immediate-mode", "-U", "outbound and ether proto 0x88b5"))
        {
            await Task.Delay(span);
        }


        return file;
    }

    /// <summary>
    /// Replays a pcap file from a host on the LAN at <paramref name="pps"/> frames a second, looping, until disposed. A
    /// raised priority and the default timer are what it takes to reach 50,000 frames a second here (LAB-NOTES.md).
    /// </summary>
    public static Shell.Background Replay(ForeignHost host, string file, int pps) =>
        new("ip", ["netns", "exec", host.Namespace, "nice", "-n", "-10", "tcpreplay", $"--pps={pps}", "--loop=0", "-q", "-i", "eth0", file]);

    /// <summary>A host that sends frames from any source MAC: its bridge port learns none of them (LAB-NOTES.md), so the bridge's table stays as it was.</summary>
    public async Task<ForeignHost> AddIntruderAsync(string name)
    {
        var host = await AddForeignHostAsync(name);
        await Shell.MustAsync("bridge", "-n", LanNs, "link", "set", "dev", $"f-{name}", "learning", "off");
        return host;
    }

    /// <summary>
    /// Drops the speakers' messages on their way to the node, at its switch port (nft, bridge family, the port as output):
    /// the node goes deaf to them and to them only, until disposed. Inside the node a rule would not do: libpcap sees the
    /// frames first (LAB-NOTES.md).
    /// </summary>
    public async Task<IAsyncDisposable> DropSpeakerFramesTowardsAsync(string node)
    {
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "table", "bridge", "lbdeaf");
        var undo = new Undo(() => Shell.RunAsync("ip", "netns", "exec", LanNs, "nft", "delete", "table", "bridge", "lbdeaf"));
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "chain", "bridge", "lbdeaf", "forward", "{ type filter hook forward priority 0; }");
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "rule", "bridge", "lbdeaf", "forward", "oifname", NodePort(node), "ether", "type", "0x88b5", "drop");
        return undo;
    }

    /// <summary>
    /// The speakers' messages (0x88B5) seen at a port of the LAN bridge, written to <paramref name="file"/> (their first
    /// 64 bytes: addresses and kind) until the capture is stopped: at a node's port <paramref name="direction"/> "out" is
    /// what the switch delivers to the node; on br0 itself, which tcpdump makes promiscuous, every frame the switch forwards.
    /// </summary>
    public Task<Shell.Background> CaptureSwitchAsync(string port, string file, string direction = "inout") =>
        Shell.CaptureOnAsync(LanNs, port, "-Q", direction, "-s", "64", "-w", file, "--immediate-mode", "-U", "ether proto 0x88b5");

    /// <summary>The resident memory of the node's speaker process, in KiB.</summary>
    public long SpeakerRssKb(string node)
    {
        // The lab starts the speaker through ip netns exec and setpriv, which exec it: same process.
        var status = File.ReadAllLines($"/proc/{_speakers[node].Pid}/status");
        return long.Parse(status.First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    /// <summary>The node's speaker metrics, by series.</summary>
    public async Task<Dictionary<string, double>> SpeakerMetricsAsync(string node)
    {
        var (code, body) = await SpeakerStatusAsync(node, "/metrics");
        Assert.Equal(200, code);
        return LbAllocator.TestApiServer.PrometheusText.Parse(body);
    }
}
