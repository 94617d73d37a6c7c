using System.Collections.Concurrent;

namespace LbAllocator.Hosting;

/// <summary>One line of a health report: a check, whether it passes, and why.</summary>
public sealed record HealthCheck(string Name, bool Ok, string Detail);

/// <summary>A health report as /healthz and /readyz print it: one line per check.</summary>
public sealed record HealthReport(IReadOnlyList<HealthCheck> Checks)
{
    public bool Ok => Checks.All(c => c.Ok);

    public string Text => string.Concat(Checks.Select(c => $"{(c.Ok ? "ok" : "FAIL")} {c.Name}: {c.Detail}\n"));
}

/// <summary>
/// Liveness and readiness of one process. Components open and close readiness gates (caches synced, lease
/// held) and loops that must keep turning report heartbeats; a loop silent for longer than it promised
/// makes the process unhealthy, so the kubelet restarts it.
/// </summary>
public sealed class Health(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, (bool Ready, string Detail)> _gates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (long At, TimeSpan MaxSilence)> _heartbeats = new(StringComparer.Ordinal);

    public void SetReady(string gate, bool ready, string detail) => _gates[gate] = (ready, detail);

    /// <summary>Records that <paramref name="loop"/> turned; it must turn again within <paramref name="maxSilence"/>.</summary>
    public void Beat(string loop, TimeSpan maxSilence) => _heartbeats[loop] = (time.GetTimestamp(), maxSilence);

    /// <summary>Forgets a loop that stopped on purpose.</summary>
    public void Stopped(string loop) => _heartbeats.TryRemove(loop, out _);

    public HealthReport Liveness() => new([.. _heartbeats.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h =>
    {
        var silence = time.GetElapsedTime(h.Value.At);
        return new HealthCheck(h.Key, silence <= h.Value.MaxSilence, $"last turned {silence.TotalSeconds:0.0}s ago (limit {h.Value.MaxSilence.TotalSeconds:0.#}s)");
    }).DefaultIfEmpty(new HealthCheck("process", true, "serving"))]);

    public HealthReport Readiness() => new([.. _gates.OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => new HealthCheck(g.Key, g.Value.Ready, g.Value.Detail))
        .DefaultIfEmpty(new HealthCheck("startup", false, "starting"))]);
}
