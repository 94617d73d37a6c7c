using System.Diagnostics;
using k8s;
using k8s.Models;
using LbAllocator.TestApiServer;

/// <summary>
/// The controller's footprint (issue 14): RSS and idle CPU with N Services assigned, measured after they were
/// created while it ran, and after a restart with them in place (start to ready too); the baseline binary
/// (the published binary of before the change) restarted on the same Services in the same run.
/// </summary>
internal static class ControllerFootprint
{
    private const string Namespace = "footprint";
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan IdleWindow = TimeSpan.FromSeconds(30);

    public static async Task RunAsync(string cli, string? baseline, KubeApiServer server, k8s.Kubernetes client, AddressWatch watch, int[] steps, int clients)
    {
        Console.WriteLine($"# Controller footprint on a real kube-apiserver ({Environment.ProcessorCount} cores, .NET {Environment.Version}); {cli}, baseline {baseline ?? "none"}; {Proc.Load()}");
        Console.WriteLine();
        Console.WriteLine($"Each row: {Settle.TotalSeconds:F0} s after the Services were all addressed (or the controller was ready), RSS (anonymous + file-backed + shared), "
            + $"peak RSS of the process so far, and CPU over {IdleWindow.TotalSeconds:F0} s idle.");
        Console.WriteLine();
        Console.WriteLine("| binary | Services | how | start to ready | RSS (anon + file + shared) | peak RSS | idle CPU |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = Namespace } });
        var controller = new ControllerProcess(cli, server.AdminKubeconfig);
        try
        {
            await controller.Ready.WaitAsync(TimeSpan.FromSeconds(90));
            var created = 0;
            foreach (var count in steps)
            {
                var addressed = Enumerable.Range(created, count - created).Select(i => watch.Addressed($"{Namespace}/fp-{i}")).ToArray();
                await Parallel.ForEachAsync(Enumerable.Range(created, count - created), new ParallelOptions { MaxDegreeOfParallelism = clients }, async (i, ct) =>
                    await client.CoreV1.CreateNamespacedServiceAsync(BenchService.Create($"fp-{i}", null), Namespace, cancellationToken: ct));
                await Task.WhenAll(addressed).WaitAsync(TimeSpan.FromMinutes(10));
                created = count;
                Console.WriteLine(await RowAsync("this binary", count, "created while it ran", "-", controller));
                foreach (var (name, binary) in new[] { ("this binary", cli), ("baseline", baseline) })
                {
                    if (binary is null)
                    {
                        continue;
                    }

                    await controller.StopAsync();
                    controller.Dispose();
                    var start = Stopwatch.GetTimestamp();
                    controller = new ControllerProcess(binary, server.AdminKubeconfig);
                    while (!await controller.IsReadyAsync())
                    {
                        await Task.Delay(50);
                    }

                    var ready = Stopwatch.GetElapsedTime(start);
                    await controller.Ready.WaitAsync(TimeSpan.FromSeconds(90)); // leading, every address claimed
                    Console.WriteLine(await RowAsync(name, count, "restarted with them", $"{ready.TotalSeconds:F2} s", controller));
                }

                if (baseline is not null)
                {
                    await controller.StopAsync();
                    controller.Dispose();
                    controller = new ControllerProcess(cli, server.AdminKubeconfig);
                    await controller.Ready.WaitAsync(TimeSpan.FromSeconds(90));
                }
            }
        }
        finally
        {
            await controller.StopAsync();
            controller.Dispose();
        }

        Console.WriteLine();
        Console.WriteLine($"Start to ready: from the process start to /readyz answering 200 (caches synced), asked every 50 ms. Finished; {Proc.Load()}");
    }

    private static async Task<string> RowAsync(string binary, int services, string how, string ready, ControllerProcess controller)
    {
        await Task.Delay(Settle);
        var cpu = Proc.CpuSeconds(controller.Pid);
        await Task.Delay(IdleWindow);
        var idle = (Proc.CpuSeconds(controller.Pid) - cpu) / IdleWindow.TotalSeconds * 100;
        var pid = controller.Pid;
        return $"| {binary} | {services:N0} | {how} | {ready} | {Proc.StatusKb(pid, "VmRSS:") / 1024.0:F0} MiB ({Proc.StatusKb(pid, "RssAnon:") / 1024.0:F0} + {Proc.StatusKb(pid, "RssFile:") / 1024.0:F0} + {Proc.StatusKb(pid, "RssShmem:") / 1024.0:F0}) "
            + $"| {Proc.StatusKb(pid, "VmHWM:") / 1024.0:F0} MiB | {idle:F2} % |";
    }
}
