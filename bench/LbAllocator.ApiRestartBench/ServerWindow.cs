using System.Diagnostics;
using LbAllocator.TestApiServer;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// What the API server counted over a window, from its own /metrics read at the window's start and end: requests
/// that write (by resource), reads (GET and LIST), watch events sent to all watchers (apiserver_watch_events_total, by
/// kind), the watches open at the end (apiserver_longrunning_requests), and its CPU. Beside them, from this process:
/// the speakers' own writes and reads as their clients sent them, and this process's CPU and memory.
/// </summary>
internal sealed record ServerWindow(
    double Seconds,
    IReadOnlyDictionary<string, double> Writes,
    double Reads,
    IReadOnlyDictionary<string, double> Events,
    double Watches,
    double ServerCpu,
    double SpeakerWrites,
    double SpeakerReads,
    double ProcessCpu,
    double ProcessRss,
    double ProcessHeap)
{
    /// <summary>The cluster's Nodes, which per-node figures divide by.</summary>
    public int Nodes { get; init; } = 1;

    // Writing verbs as apiserver_request_total names them (POST, PUT as CREATE, UPDATE in some versions).
    private static readonly HashSet<string> WriteVerbs = ["POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE"];

    public double WritesTotal => Writes.Values.Sum();

    public double EventsTotal => Events.Values.Sum();

    /// <summary>Waits <paramref name="length"/> and returns what was counted meanwhile.</summary>
    public static async Task<ServerWindow> MeasureAsync(KubeApiServer server, TimeSpan length, RequestLog log)
    {
        using var self = Process.GetCurrentProcess();
        var startCpu = self.TotalProcessorTime;
        var before = await server.MetricsAsync();
        var start = Stopwatch.GetTimestamp();
        await Task.Delay(length);
        var after = await server.MetricsAsync();
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        self.Refresh();
        var cpu = (self.TotalProcessorTime - startCpu).TotalSeconds;
        var heap = GC.GetTotalMemory(forceFullCollection: true);
        self.Refresh();
        var speakers = log.Since(start).Where(r => r.Seconds <= seconds && r.Code != 0).ToList();
        return new ServerWindow(
            seconds,
            Delta(before, after, "apiserver_request_total", "resource", l => WriteVerbs.Contains(l.GetValueOrDefault("verb", ""))),
            Delta(before, after, "apiserver_request_total", "verb", l => l.GetValueOrDefault("verb") is "GET" or "LIST").Values.Sum(),
            Delta(before, after, "apiserver_watch_events_total", "kind"),
            PrometheusText.Sum(after, "apiserver_longrunning_requests", "verb").GetValueOrDefault("WATCH"),
            Value(after, "process_cpu_seconds_total") - Value(before, "process_cpu_seconds_total"),
            speakers.Count(r => r.Write),
            speakers.Count(r => r.Method == "GET"),
            cpu,
            self.WorkingSet64,
            heap);
    }

    /// <summary>A counter's growth over the window, summed by one label, only the series that grew.</summary>
    private static Dictionary<string, double> Delta(string before, string after, string metric, string byLabel, Func<IReadOnlyDictionary<string, string>, bool>? where = null)
    {
        var then = PrometheusText.Sum(before, metric, byLabel, where);
        return PrometheusText.Sum(after, metric, byLabel, where)
            .Select(kv => (kv.Key, Grew: kv.Value - then.GetValueOrDefault(kv.Key)))
            .Where(x => x.Grew > 0)
            .ToDictionary(x => x.Key, x => x.Grew, StringComparer.Ordinal);
    }

    private static double Value(string metrics, string name) => PrometheusText.Parse(metrics).GetValueOrDefault(name);
}
