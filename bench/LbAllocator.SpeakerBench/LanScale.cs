using System.Globalization;
using k8s;
using LbAllocator.NetTests;
using LbAllocator.Speaker.Lan;

/// <summary>
/// The LAN's cost per node with a thousand speakers on one segment (issue 26, goal 2): the lab's three real speakers
/// beside M simulated ones (<see cref="SimHost"/>, each the product's own membership) on the same bridge. Measured over
/// a window of steady state, first without the simulated speakers, then with them, in the same run: the speaker
/// messages each real node receives (captured at its switch port), its speakers' CPU and RSS, every speaker message on
/// the wire and the broadcasts among them (captured on the bridge), the simulated speakers' unicast among themselves;
/// then failover trials, without and with them.
/// `lan-scale [--members 1000] [--join-rate 5] [--window 60] [--trials 20] [--faults kill,link]`.
/// </summary>
internal static class LanScale
{
    private const string Vip = "192.0.2.210";

    public static async Task<int> RunAsync(string[] args)
    {
        var members = int.Parse(Option(args, "--members") ?? "1000", CultureInfo.InvariantCulture);
        var joinRate = Option(args, "--join-rate") ?? "5";
        var window = TimeSpan.FromSeconds(double.Parse(Option(args, "--window") ?? "60", CultureInfo.InvariantCulture));
        var trials = int.Parse(Option(args, "--trials") ?? "20", CultureInfo.InvariantCulture);
        var faults = (Option(args, "--faults") ?? "kill,link").Split(',').Select(f => f switch
        {
            "kill" => Fault.All[0],
            "link" => Fault.All[2],
            _ => throw new ArgumentException($"--faults: \"{f}\" is neither kill nor link"),
        }).ToList();

        // As deployed: default timings, Information logs.
        var lab = new Lab { SpeakerOptions = [], SpeakerLogLevel = "Information" };
        try
        {
            await lab.InitializeAsync();
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }

        SimProcess? sims = null;
        try
        {
            await lab.CreateServiceAsync("bench", ip: Vip);
            var owner = await lab.WaitForArpOwnerAsync(Vip);
            await using var host = await lab.AddForeignHostAsync("sims");
            Console.WriteLine($"# A thousand members on one segment ({Environment.ProcessorCount} cores, .NET {Environment.Version}); {members} simulated speakers joining {joinRate}/s beside the 3 real ones; "
                + $"windows of {window.TotalSeconds:F0} s; owner of {Vip} {owner}; {Proc.Load()}");
            Console.WriteLine();

            var baseline = await Window.MeasureAsync(lab, window, sims: null);
            var results = new List<(string Fault, bool Sims, List<Trial> Trials)>();
            foreach (var fault in faults)
            {
                results.Add((fault.Name, false, await TrialsAsync(lab, fault, trials, sims: null)));
            }

            var secret = await lab.Client.CoreV1.ReadNamespacedSecretAsync(ClusterKey.SecretName, Lab.InstallNamespace);
            sims = SimProcess.Start(host.Namespace, members, joinRate, secret.Data);
            var (joined, joining) = await JoinAsync(lab, sims, members, joinRate);
            Console.WriteLine(joined);
            Console.WriteLine();
            var loaded = await Window.MeasureAsync(lab, window, sims);
            Window.Print(baseline, loaded, joining, members);
            Console.WriteLine();
            foreach (var fault in faults)
            {
                results.Add((fault.Name, true, await TrialsAsync(lab, fault, trials, sims)));
            }

            var during = sims.Statuses().ToList();
            var after = $"after the trials: the simulation's census {await sims.CensusAsync()}; the real speakers' views {string.Join(", ", await ViewSizesAsync(lab))}; "
                + $"over the whole simulation {during[^1].Rejoins} rejoins of simulated speakers, tick slots at most {during.Max(s => s.MaxLagMs):F0} ms late, at most {during.Max(s => s.MaxBacklog)} messages waiting";
            Console.WriteLine($"## Failover ({trials} trials of each fault, without and with the {members} simulated speakers; {Proc.Load()})");
            Console.WriteLine();
            Console.WriteLine("| fault | simulated speakers | taken over | p50 | p99 | max | requests answered by two nodes | longest silence at the fault | back p50 / max |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
            foreach (var (fault, withSims, list) in results)
            {
                if (list.Count == 0)
                {
                    Console.WriteLine($"| {fault} | {(withSims ? members : 0)} | none done | | | | | | |");
                    continue;
                }

                var times = Failover.Times(list);
                var backs = list.Select(t => t.Back).OfType<double>().Order().ToArray();
                var taken = times.Length == 0 ? "| - | - | -" : $"| {Failover.P(times, 0.5):F2} s | {Failover.P(times, 0.99):F2} s | {times[^1]:F2} s";
                Console.WriteLine($"| {fault} | {(withSims ? members : 0)} | {times.Length} of {list.Count} {taken} | {list.Sum(t => t.Doubles.Length)} of {list.Sum(t => t.Asked):N0} | {list.Max(t => t.SilenceAtFault):F2} s "
                    + $"| {(backs.Length == 0 ? "-" : $"{Failover.P(backs, 0.5):F2} / {backs[^1]:F2} s")} |");
            }

            Console.WriteLine();
            Console.WriteLine(after);
            foreach (var (fault, withSims, list) in results)
            {
                foreach (var line in Failover.Details($"{fault}, {(withSims ? members : 0)} simulated", list))
                {
                    Console.WriteLine(line);
                }
            }

            Console.WriteLine($"simulation's time in the memberships and unicast in memory, since it started: {sims.Lines.LastOrDefault(l => l.StartsWith("cost ", StringComparison.Ordinal))}");
            await sims.StopAsync();
            Console.WriteLine($"simulation stopped (each simulated speaker left); its last lines: {string.Join(" | ", sims.Lines.TakeLast(2))}");
        }
        finally
        {
            sims?.Dispose();
            await lab.DisposeAsync();
        }

        return 0;
    }

    /// <summary>The trials of one fault; should one fail (nobody answers at all), what the speakers say then, and the trials done so far.</summary>
    private static async Task<List<Trial>> TrialsAsync(Lab lab, Fault fault, int count, SimProcess? sims)
    {
        var done = new List<Trial>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                done.Add(await Failover.TrialAsync(lab, Vip, fault));
            }
        }
        catch (Exception e) when (e is Xunit.Sdk.XunitException or InvalidOperationException)
        {
            Console.WriteLine($"{fault.Name}, {(sims is null ? "without" : "with")} simulated speakers: trial {done.Count + 1} failed: {e.Message.Split('\n')[0]}");
            foreach (var node in Lab.Nodes)
            {
                var (code, body) = await lab.SpeakerStatusAsync(node, "/readyz");
                Console.WriteLine($"  {node} readyz {code}: {body.ReplaceLineEndings(" ")}");
            }

            Console.WriteLine($"  real speakers' views {string.Join(", ", await ViewSizesAsync(lab))}" + (sims is null ? "" : $"; simulation {await sims.CensusAsync()}; last status {sims.Latest()}"));
            // The next fault starts from every node back, if it can.
            foreach (var node in Lab.Nodes)
            {
                await lab.SetLanLinkAsync(node, up: true);
                if (lab.Speaker(node).HasExited)
                {
                    lab.StartSpeaker(node);
                }
            }
        }

        return done;
    }

    /// <summary>
    /// Waits until every simulated speaker is a member with a view of them all and the three real ones, and each real
    /// speaker's view (lballocator_speaker_lan_members) holds as many; what the wire carried meanwhile, from the bridge.
    /// </summary>
    private static async Task<(string Joined, Window.Segment Wire)> JoinAsync(Lab lab, SimProcess sims, int members, string joinRate)
    {
        var expected = members + Lab.Nodes.Length;
        var file = Path.Combine(Path.GetTempPath(), $"lbscale{Environment.ProcessId}-join.pcap");
        var capture = await lab.CaptureSwitchAsync("br0", file);
        var started = DateTime.UtcNow;
        var timeout = TimeSpan.FromSeconds(180 + (members / double.Parse(joinRate, CultureInfo.InvariantCulture)));
        string census = "";
        int[] views = [];
        while (DateTime.UtcNow - started < timeout)
        {
            await Task.Delay(TimeSpan.FromSeconds(5));
            census = await sims.CensusAsync();
            views = await ViewSizesAsync(lab);
            await Console.Error.WriteLineAsync($"{(DateTime.UtcNow - started).TotalSeconds:F0} s: simulation {census}; real speakers' views {string.Join(", ", views)}");
            if (census.StartsWith($"members {members}/{members} view {expected}-{expected}", StringComparison.Ordinal) && views.All(v => v == expected))
            {
                break;
            }
        }

        var took = DateTime.UtcNow - started;
        var wire = await Window.StopAsync(capture, file, took);
        var settled = views.All(v => v == expected) ? "every view holds them all" : "NOT CONVERGED";
        var statuses = sims.Statuses().ToList();
        settled += $"; meanwhile {statuses[^1].Rejoins} rejoins of simulated speakers, tick slots at most {statuses.Max(s => s.MaxLagMs):F0} ms late, at most {statuses.Max(s => s.MaxBacklog)} messages waiting";
        await Task.Delay(TimeSpan.FromSeconds(10)); // past the joins' repeats
        return ($"Joined: {took.TotalSeconds:F0} s from the start of the simulation to {settled} (simulation: {census}; real speakers' views {string.Join(", ", views)}); "
            + $"on the wire meanwhile {wire.All:F0} speaker frames/s, {wire.Broadcast:F0} of them broadcast ({wire.Kinds()})", wire);
    }

    private static async Task<int[]> ViewSizesAsync(Lab lab)
    {
        var sizes = new List<int>();
        foreach (var node in Lab.Nodes)
        {
            try
            {
                sizes.Add((int)(await lab.SpeakerMetricsAsync(node)).GetValueOrDefault("lballocator_speaker_lan_members", -1));
            }
            catch (Exception e) when (e is Xunit.Sdk.XunitException or FormatException)
            {
                sizes.Add(-1); // restarting
            }
        }

        return [.. sizes];
    }

    private static string? Option(string[] args, string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
