using System.Collections.Concurrent;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Speaker.Capture;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>A Service another node announces, which this node checks: its status, owner, addresses and the owner's MACs (from the status).</summary>
public sealed record VerifyTarget(string ServiceKey, string StatusName, string Owner, IReadOnlyList<Ip> Addresses, IReadOnlyList<MacAddress> OwnerMacs);

/// <summary>One check's verdict on a Service.</summary>
public sealed record Verdict(bool Verified, string Reason, string Message);

/// <summary>
/// Self-verified announcements: one speaker other than the owner (<see cref="VerifierOf"/>) asks for each of a
/// Service's addresses every 10 s, and at once after a takeover, and checks the owner's MAC answers, and only it. The
/// questions are probes (ARP from 0.0.0.0, Neighbor Solicitations from ::), which every speaker answers and no
/// neighbour learns from. The verdict goes into the ServiceL2Status's Verified condition (through the
/// <see cref="L2StatusWriter"/>, off this loop), and a False one into a Warning event on the Service.
/// </summary>
public sealed partial class Verifier(string node, IAddressWatch watch, ICaptures captures, IStatusWriter writer, TimeProvider time, ILogger<Verifier> logger) : IDisposable
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    /// <summary>The most MACs kept per address in one round: any more answering it (a flood) are counted, not listed.</summary>
    public const int MaxAnswerers = 8;

    // The owner answers a probe at once; half a second leaves room for a busy node.
    public static readonly TimeSpan AnswerWait = TimeSpan.FromMilliseconds(500);

    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly ConcurrentDictionary<Ip, Answers> _answers = new();
    private Dictionary<string, VerifyTarget> _targets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Verdict> _last = new(StringComparer.Ordinal);
    private Func<string, V1Service?> _service = _ => null;

    /// <summary>
    /// The node that checks a Service: of the live speakers other than the owner, the one ranked first by the
    /// election's own rendezvous hash of node and Service (so every speaker names the same one, and a verifier
    /// leaving moves only its own Services).
    /// </summary>
    public static string? VerifierOf(string serviceKey, string owner, IEnumerable<string> alive) =>
        alive.Where(n => n != owner)
            .OrderByDescending(n => Election.Score(n, serviceKey))
            .ThenBy(n => n, StringComparer.Ordinal)
            .FirstOrDefault();

    /// <summary>The verdict on one Service from the MACs heard answering each address (at most <see cref="MaxAnswerers"/> each, and how many more).</summary>
    public static Verdict Judge(VerifyTarget target, IReadOnlyDictionary<Ip, IReadOnlyCollection<MacAddress>> answers, IReadOnlyDictionary<Ip, int>? more = null)
    {
        var owner = $"node {target.Owner} ({string.Join(", ", target.OwnerMacs)})";
        var problems = new List<string>();
        var reason = "Answered";
        foreach (var ip in target.Addresses)
        {
            var heard = answers.GetValueOrDefault(ip) ?? [];
            var others = heard.Where(m => !target.OwnerMacs.Contains(m)).ToList();
            if (others.Count > 0)
            {
                reason = "AnsweredByOthers";
                var extra = more?.GetValueOrDefault(ip) is > 0 and var count ? $" (and {count} more answers from other MACs)" : "";
                problems.Add($"{ip} answered by {string.Join(", ", others)}{extra}, not only by {owner}");
            }
            else if (heard.Count == 0)
            {
                reason = reason == "AnsweredByOthers" ? reason : "NoAnswer";
                problems.Add($"{ip} not answered (the owner is {owner})");
            }
        }

        return problems.Count == 0
            ? new Verdict(true, reason, $"{string.Join(", ", target.Addresses)} answered by {owner}")
            : new Verdict(false, reason, string.Join("; ", problems));
    }

    /// <summary>
    /// The Services this node checks now; one that is new, or whose owner or MACs changed (a takeover), is checked at
    /// once. <paramref name="service"/> gives the Service for events.
    /// </summary>
    public void Set(IEnumerable<VerifyTarget> targets, Func<string, V1Service?> service)
    {
        var now = targets.ToDictionary(t => t.StatusName, StringComparer.Ordinal);
        bool changed;
        lock (_lock)
        {
            _service = service;
            changed = now.Any(kv => !_targets.TryGetValue(kv.Key, out var before) || before.Owner != kv.Value.Owner
                || !before.OwnerMacs.SequenceEqual(kv.Value.OwnerMacs) || !before.Addresses.SequenceEqual(kv.Value.Addresses));
            foreach (var gone in _targets.Keys.Where(k => !now.ContainsKey(k)))
            {
                writer.StopVerifying(gone);
                _last.Remove(gone);
            }

            _targets = now;
        }

        watch.Verify([.. now.Values.SelectMany(t => t.Addresses).Distinct()]);
        if (changed)
        {
            _wake.Release();
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        watch.AddressAnswered += OnAnswer;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    await Task.WhenAny(Task.Delay(Interval, time, wait.Token), _wake.WaitAsync(wait.Token));
                    await wait.CancelAsync();
                }

                cancellationToken.ThrowIfCancellationRequested();
                while (_wake.CurrentCount > 0)
                {
                    await _wake.WaitAsync(cancellationToken); // one check covers every wake-up so far
                }

                await CheckAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            watch.AddressAnswered -= OnAnswer;
        }
    }

    /// <summary>One round: every target's addresses asked for on every interface, answers collected for <see cref="AnswerWait"/>, verdicts handed on.</summary>
    internal async Task CheckAsync(CancellationToken cancellationToken)
    {
        List<VerifyTarget> targets;
        lock (_lock)
        {
            targets = [.. _targets.Values];
        }

        if (targets.Count == 0)
        {
            return;
        }

        _answers.Clear();
        var addresses = targets.SelectMany(t => t.Addresses).Distinct().ToList();
        foreach (var ip in addresses)
        {
            _answers[ip] = new Answers();
        }

        foreach (var ip in addresses)
        {
            foreach (var name in captures.Interfaces.Keys)
            {
                watch.Probe(ip, name);
            }
        }

        await Task.Delay(AnswerWait, time, cancellationToken);
        var heard = _answers.ToDictionary(kv => kv.Key, kv => kv.Value.Macs());
        var more = _answers.ToDictionary(kv => kv.Key, kv => kv.Value.More);
        foreach (var target in targets)
        {
            Report(target, Judge(target, heard, more));
        }
    }

    private void Report(VerifyTarget target, Verdict verdict)
    {
        Func<string, V1Service?> service;
        Verdict? before;
        lock (_lock)
        {
            if (!_targets.ContainsKey(target.StatusName))
            {
                return; // no longer ours to check
            }

            before = _last.GetValueOrDefault(target.StatusName);
            _last[target.StatusName] = verdict;
            service = _service;
        }

        writer.SetVerified(target.StatusName, verdict.Verified, verdict.Reason, verdict.Message);
        if (verdict == before)
        {
            return;
        }

        if (verdict.Verified)
        {
            writer.Forget(target.ServiceKey, PlannedEvent.VerifyTopic); // the next failure is news again
        }
        else
        {
            LogNotVerified(target.ServiceKey, verdict.Message);
            if (service(target.ServiceKey) is { } found)
            {
                writer.Record(found, new PlannedEvent(target.ServiceKey, "Warning", "NotVerified", $"checked by node {node}: {verdict.Message}", PlannedEvent.VerifyTopic));
            }
        }
    }

    public void Dispose() => _wake.Dispose();

    private void OnAnswer(Ip address, MacAddress from)
    {
        if (_answers.TryGetValue(address, out var answers))
        {
            answers.Add(from);
        }
    }

    /// <summary>The MACs heard answering one address in a round: the first <see cref="MaxAnswerers"/>, and how many more.</summary>
    private sealed class Answers
    {
        private readonly HashSet<MacAddress> _macs = [];

        public int More { get; private set; }

        public void Add(MacAddress mac)
        {
            lock (_macs)
            {
                if (_macs.Count < MaxAnswerers)
                {
                    _macs.Add(mac);
                }
                else if (!_macs.Contains(mac))
                {
                    More++;
                }
            }
        }

        public IReadOnlyCollection<MacAddress> Macs()
        {
            lock (_macs)
            {
                return [.. _macs];
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Announcement of {Service} not verified: {Problem}")]
    private partial void LogNotVerified(string service, string problem);
}
