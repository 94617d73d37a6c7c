using System.Diagnostics;
using System.Globalization;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.NetTests;
using LbAllocator.Speaker;
using SharpPcap;
using SharpPcap.LibPcap;

/// <summary>
/// The speaker's footprint in the lab (issue 14): RSS and idle CPU of each speaker with 100 and 1,000 VIPs
/// announced, and its start to ready; against, in the same run, a bare .NET process that only opens a pcap
/// handle, and the speakers restarted on a baseline binary (the published binary of before the change).
/// The speakers run as deployed: in-cluster client configuration, Information logs, JSON.
/// </summary>
internal static class Footprint
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan IdleWindow = TimeSpan.FromSeconds(30);
    private const string Pool = "footprint";

    /// <summary>`footprint --cli PATH/TO/lballocator[.dll] [--baseline-cli PATH/TO/lballocator[.dll]] [--vips 100,1000] [--starts N] [--hold SECONDS] [--variant "NAME:SETTING;..."]...`, a setting either an environment variable (KEY=VALUE) or a speaker option (--heartbeat-interval=1).</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var cli = Path.GetFullPath(Option(args, "--cli") ?? "out/lballocator");
        var baseline = Option(args, "--baseline-cli") is { } b ? Path.GetFullPath(b) : null;
        if (!File.Exists(cli) || (baseline is not null && !File.Exists(baseline)))
        {
            Console.Error.WriteLine("usage: footprint --cli PATH/TO/lballocator[.dll] [--baseline-cli PATH/TO/lballocator[.dll]] [--vips 100,1000] (binaries published by scripts/build.sh)");
            return 2;
        }

        // --starts N: start to ready measured N times per binary (one start is at the mercy of the machine's load).
        var starts = int.Parse(Option(args, "--starts") ?? "1", CultureInfo.InvariantCulture);
        var steps = (Option(args, "--vips") ?? "100,1000").Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        // As deployed: default timings (the tests' 2 s gratuitous refresh would be 500 announcements a second at 1,000 VIPs).
        var lab = new Lab { SpeakerCli = cli, SpeakerLogLevel = "Information", SpeakersInCluster = true, SpeakerOptions = [] };
        try
        {
            await lab.InitializeAsync();
        }
        catch
        {
            await lab.DisposeAsync(); // keeps the speakers' output where LBALLOCATOR_LAB_LOGS says
            throw;
        }

        try
        {
            await lab.Client.CustomObjects.CreateNamespacedCustomObjectAsync(
                new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = Pool }, Spec = new IPAddressPoolSpec { Addresses = ["2001:db8:f::/116"], AutoAssign = false } },
                Api.Group, Api.Version, Lab.InstallNamespace, "ipaddresspools");
            Console.WriteLine($"# Speaker footprint ({Environment.ProcessorCount} cores, .NET {Environment.Version}); speakers run {cli}, baseline {baseline ?? "none"}; {Proc.Load()}");
            Console.WriteLine();
            Console.WriteLine($"Each step: the Services created (IPv6, pool {Pool}), all their VIPs announced (the speakers' lballocator_speaker_addresses_announced add up), "
                + $"{Settle.TotalSeconds:F0} s to settle, then RSS (anonymous: heap and runtime data; file: mapped code; shared: memfd, W^X double mapping of generated code) and CPU over {IdleWindow.TotalSeconds:F0} s idle of each speaker, with how often its threads were woken (schedstat).");
            Console.WriteLine();
            Console.WriteLine("| settings | VIPs | " + string.Join(" | ", Lab.Nodes.Select(n => $"{n} RSS (anon + file + shared) | {n} idle CPU (wake-ups/s)")) + " |");
            Console.WriteLine("|---|---|" + string.Concat(Lab.Nodes.Select(_ => "---|---|")));

            Console.WriteLine(await BarePcapAsync(lab, beat: false));
            Console.WriteLine(await BarePcapAsync(lab, beat: true));
            Console.WriteLine(await BareCAsync(lab));
            var created = 0;
            var readiness = new List<string>();
            foreach (var vips in steps)
            {
                await CreateServicesAsync(lab, created, vips);
                created = vips;
                Console.WriteLine(await MeasureAsync(lab, "this binary", vips));
            }

            readiness.Add($"this binary, {created:N0} VIPs: {await StartsToReadyAsync(lab, starts)}");
            readiness.Add($"baseline, curl reading the same six collections and the key at once from node3: {await PlainListsAsync(lab, starts)}");

            // --variant "NAME:SETTING;SETTING": this binary again with those options or that environment, to weigh a setting.
            foreach (var variant in args.Where((_, i) => i > 0 && args[i - 1] == "--variant"))
            {
                var (name, settings) = (variant.Split(':', 2)[0], variant.Split(':', 2)[1]);
                lab.SpeakerEnvironment.Clear();
                var options = new List<string>();
                foreach (var setting in settings.Split(';'))
                {
                    // The speaker's own settings are command-line options: they override the environment.
                    if (setting.StartsWith("--", StringComparison.Ordinal))
                    {
                        options.Add(setting);
                    }
                    else
                    {
                        lab.SpeakerEnvironment[setting.Split('=', 2)[0]] = setting.Split('=', 2)[1];
                    }
                }

                lab.SpeakerOptions = options;
                await RestartAllAsync(lab);
                Console.WriteLine(await MeasureAsync(lab, $"this binary, {name} ({settings})", created));
            }

            // --hold SECONDS: the lab stays up this long with this binary's speakers (under the last variant's settings), to profile them (perf, smaps).
            if (Option(args, "--hold") is { } hold)
            {
                Console.Error.WriteLine($"holding the lab for {hold} s; speakers: {string.Join(", ", Lab.Nodes.Select(n => $"{n} pid {lab.Speaker(n).Pid}"))}");
                await Task.Delay(TimeSpan.FromSeconds(int.Parse(hold, CultureInfo.InvariantCulture)));
            }

            lab.SpeakerEnvironment.Clear();
            lab.SpeakerOptions = [];
            if (baseline is not null)
            {
                lab.SpeakerCli = baseline;
                await RestartAllAsync(lab);
                Console.WriteLine(await MeasureAsync(lab, "baseline binary", created));
                readiness.Add($"baseline binary, {created:N0} VIPs: {await StartsToReadyAsync(lab, starts)}");
            }

            Console.WriteLine();
            Console.WriteLine($"Start to ready (node3's speaker restarted; from the process start to /readyz answering 200, asked every 50 ms): {string.Join("; ", readiness)}.");
            Console.WriteLine($"Finished; {Proc.Load()}");
        }
        finally
        {
            await lab.DisposeAsync();
        }

        return 0;
    }

    /// <summary>
    /// `pcap-idle`: what a .NET process that only opens a capture on eth0 costs (a baseline row). `pcap-idle beat`: one
    /// that only sends a 60-byte frame every 100 ms from a thread of its own, as the speaker's heartbeat does (EtherType
    /// 0x88B6, which no speaker captures): the floor under the speaker's heartbeats on this machine.
    /// </summary>
    public static int PcapIdle(bool beat)
    {
        using var device = LibPcapLiveDeviceList.New().First(d => d.Name == "eth0");
        device.Open(new DeviceConfiguration { Mode = DeviceModes.Promiscuous, Immediate = true, ReadTimeout = 100 });
        if (!beat)
        {
            device.OnPacketArrival += (_, _) => { };
            device.StartCapture();
            Console.WriteLine("open");
            Thread.Sleep(Timeout.Infinite);
        }

        var frame = new byte[60];
        frame.AsSpan(0, 6).Fill(0xff);
        frame[6] = 0x02;
        frame[12] = 0x88;
        frame[13] = 0xb6;
        Console.WriteLine("open");
        while (true)
        {
            device.SendPacket(frame);
            Thread.Sleep(100);
        }
    }

    private static Task<string> BarePcapAsync(Lab lab, bool beat) =>
        BaselineAsync(
            lab,
            beat ? "bare .NET process sending a frame every 100 ms (baseline: the heartbeat's floor)" : "bare .NET process, one pcap handle open, capturing everything (baseline)",
            ["dotnet", typeof(Footprint).Assembly.Location, "pcap-idle", .. beat ? ["beat"] : Array.Empty<string>()]);

    /// <summary>heartbeat-floor.c, compiled here with the system's cc: the heartbeat's floor on this machine without .NET.</summary>
    private static async Task<string> BareCAsync(Lab lab)
    {
        var what = "C process sending a frame every 100 ms (baseline: the heartbeat's floor on this machine)";
        var binary = Path.Combine(Path.GetTempPath(), $"lbt-heartbeat-floor-{Environment.ProcessId}");
        var (code, output) = await Shell.RunAsync("cc", "-O2", "-o", binary, Path.Combine(AppContext.BaseDirectory, "heartbeat-floor.c"));
        try
        {
            return code == 0 ? await BaselineAsync(lab, what, [binary, "eth0"]) : $"| {what}: not measured, cc failed: {output.Trim()} | |";
        }
        finally
        {
            File.Delete(binary);
        }
    }

    /// <summary>A baseline row: memory, CPU and wake-ups of a process run in node1's namespace that prints "open" when set.</summary>
    private static async Task<string> BaselineAsync(Lab lab, string what, string[] command)
    {
        using var bare = new Shell.Background("ip", ["netns", "exec", lab.NodeNs(Lab.Nodes[0]), .. command]);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!bare.Lines.Contains("open") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        await Task.Delay(TimeSpan.FromSeconds(5));
        var cpu = Proc.CpuSeconds(bare.Pid);
        var threads = Proc.Threads(bare.Pid);
        await Task.Delay(IdleWindow);
        var (perThread, wakeups, perWakeup) = Proc.ThreadsBetween(threads, Proc.Threads(bare.Pid), IdleWindow);
        Console.Error.WriteLine($"{what}: threads over {IdleWindow.TotalSeconds:F0} s (schedstat): {perThread}; {perWakeup.TotalMicroseconds:F0} µs on a CPU per wake-up");
        return $"| {what} | - | {Memory(bare.Pid)} | {(Proc.CpuSeconds(bare.Pid) - cpu) / IdleWindow.TotalSeconds * 100:F2} % ({wakeups:F0}/s) |" + string.Concat(Lab.Nodes.Skip(1).Select(_ => " | |"));
    }

    private static async Task RestartAllAsync(Lab lab)
    {
        foreach (var node in Lab.Nodes)
        {
            lab.StartSpeaker(node);
        }

        await lab.WaitForSpeakersAsync(Lab.Nodes);
    }

    private static async Task CreateServicesAsync(Lab lab, int from, int to)
    {
        await Parallel.ForEachAsync(Enumerable.Range(from, to - from), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
            await lab.Client.CoreV1.CreateNamespacedServiceAsync(new V1Service
            {
                Metadata = new V1ObjectMeta { Name = $"fp-{i:D4}", Annotations = new Dictionary<string, string> { [ServiceAnnotations.AddressPool] = Pool } },
                Spec = new V1ServiceSpec
                {
                    Type = "LoadBalancer",
                    AllocateLoadBalancerNodePorts = false,
                    Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }],
                    IpFamilies = ["IPv6"],
                    IpFamilyPolicy = "SingleStack",
                },
            }, "default", cancellationToken: ct));
    }

    private static async Task<string> MeasureAsync(Lab lab, string settings, int vips)
    {
        var deadline = DateTime.UtcNow.AddMinutes(5);
        int announced;
        while ((announced = await AnnouncedAsync(lab)) < vips)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{announced} of {vips} VIPs announced after 5 minutes");
            }

            await Task.Delay(500);
        }

        await Task.Delay(Settle);
        var pids = Lab.Nodes.Select(n => lab.Speaker(n).Pid).ToArray();
        var before = pids.Select(Proc.CpuSeconds).ToArray();
        var threadsBefore = pids.Select(Proc.Threads).ToArray();
        await Task.Delay(IdleWindow);
        var threads = pids.Select((pid, i) => Proc.ThreadsBetween(threadsBefore[i], Proc.Threads(pid), IdleWindow)).ToArray();
        var cells = pids.Select((pid, i) => $"{Memory(pid)} | {(Proc.CpuSeconds(pid) - before[i]) / IdleWindow.TotalSeconds * 100:F2} % ({threads[i].WakeupsPerSecond:F0}/s)");
        Console.Error.WriteLine($"{settings}, {vips} VIPs, {Lab.Nodes[0]}'s largest mappings: {Proc.TopMappings(pids[0], 8)}");
        Console.Error.WriteLine($"{settings}, {vips} VIPs, {Lab.Nodes[0]}'s threads over {IdleWindow.TotalSeconds:F0} s: {threads[0].PerThread}");
        return $"| {settings} | {vips:N0} | {string.Join(" | ", cells)} |";
    }

    /// <summary>VIPs announced by all speakers together (each VIP by exactly one).</summary>
    private static async Task<int> AnnouncedAsync(Lab lab)
    {
        var total = 0;
        foreach (var node in Lab.Nodes)
        {
            var (code, body) = await lab.SpeakerStatusAsync(node, "/metrics");
            var line = code == 200 ? body.Split('\n').FirstOrDefault(l => l.StartsWith("lballocator_speaker_addresses_announced ", StringComparison.Ordinal)) : null;
            total += line is null ? 0 : (int)double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }

        return total;
    }

    private static async Task<string> StartsToReadyAsync(Lab lab, int starts)
    {
        var took = new List<double>();
        for (var i = 0; i < starts; i++)
        {
            took.Add(await StartToReadyAsync(lab));
        }

        return Seconds(took);
    }

    private static string Seconds(List<double> took) =>
        string.Join(" ", took.Select(t => t.ToString("F2", CultureInfo.InvariantCulture))) + " s" + (took.Count > 1 ? $" (median {took.Order().ElementAt(took.Count / 2):F2} s)" : "");

    /// <summary>
    /// What the speaker's start waits on most: the lists its caches sync from. A plain client (curl, the speaker's
    /// token, in node3's namespace) asks for the same six collections and the key Secret in parallel, with curl's defaults (HTTP/2 when
    /// the server offers it); from the process start to its exit.
    /// </summary>
    private static async Task<string> PlainListsAsync(Lab lab, int times)
    {
        const string Ns = Lab.InstallNamespace;
        string[] paths =
        [
            KubeResources.Services.CollectionPath(null), KubeResources.EndpointSlices.CollectionPath(null),
            KubeResources.ConfigMaps.CollectionPath(Ns) + "?fieldSelector=" + Uri.EscapeDataString($"metadata.name={LbAllocator.Kubernetes.NodeDigest.ConfigMapName}"),
            KubeResources.Pools.CollectionPath(Ns), KubeResources.Advertisements.CollectionPath(Ns), KubeResources.ServiceL2Statuses.CollectionPath(Ns),
            KubeResources.Secrets.CollectionPath(Ns) + "/" + LbAllocator.Kubernetes.SpeakerKeySecret.Name,
        ];
        var token = await File.ReadAllTextAsync(Path.Combine(lab.ServiceAccountDir, "token"));
        string[] curl =
        [
            "netns", "exec", lab.NodeNs(Lab.Nodes[^1]), "curl", "-sf", "--parallel", "--parallel-immediate", "--parallel-max", "7",
            "--cacert", Path.Combine(lab.ServiceAccountDir, "ca.crt"), "-H", $"Authorization: Bearer {token}", "-H", "Accept: application/json",
            .. paths.SelectMany(p => new[] { "-o", "/dev/null", $"https://{Lab.ApiIp}:{lab.Server.Url.Port}/{p}{(p.Contains('?', StringComparison.Ordinal) ? '&' : '?')}resourceVersion=0" }),
        ];
        var took = new List<double>();
        for (var i = 0; i < times; i++)
        {
            var start = Stopwatch.GetTimestamp();
            var (code, output) = await Shell.RunAsync("ip", curl);
            took.Add(code == 0 ? Stopwatch.GetElapsedTime(start).TotalSeconds : throw new InvalidOperationException($"curl failed ({code}): {output}"));
        }

        return Seconds(took);
    }

    private static async Task<double> StartToReadyAsync(Lab lab)
    {
        var node = Lab.Nodes[^1];
        await lab.Speaker(node).SignalAsync("TERM");
        await lab.Speaker(node).WaitForExitAsync(TimeSpan.FromSeconds(10));
        var start = Stopwatch.GetTimestamp();
        lab.StartSpeaker(node);
        while ((await lab.SpeakerStatusAsync(node, "/readyz")).Code != 200)
        {
            if (Stopwatch.GetElapsedTime(start) > TimeSpan.FromSeconds(60))
            {
                throw new TimeoutException($"{node} not ready 60 s after its start");
            }

            await Task.Delay(50);
        }

        var took = Stopwatch.GetElapsedTime(start).TotalSeconds;
        await lab.WaitForSpeakersAsync([node]);
        return took;
    }

    /// <summary>"RSS MiB (anonymous + file-backed + shared)" from /proc/PID/status.</summary>
    private static string Memory(int pid) =>
        $"{Proc.StatusKb(pid, "VmRSS:") / 1024.0:F0} MiB ({Proc.StatusKb(pid, "RssAnon:") / 1024.0:F0} + {Proc.StatusKb(pid, "RssFile:") / 1024.0:F0} + {Proc.StatusKb(pid, "RssShmem:") / 1024.0:F0})";

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
