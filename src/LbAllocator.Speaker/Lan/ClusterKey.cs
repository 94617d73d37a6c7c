using System.Net;
using k8s.Models;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker.Lan;

/// <summary>
/// The cluster key the speakers sign their LAN messages with, read from one Secret by name (the controller creates it
/// with a random key when it is missing; the speaker may read that Secret and no other). Read again every
/// <see cref="ReadInterval"/>, so a change reaches every speaker within that. A changed key is accepted at once but
/// signs only after <see cref="SwitchAfter"/>, when every speaker has read it, and the keys it replaced stay accepted
/// as long again: any change, a rotation or a deleted Secret created anew, goes through without two speakers ever
/// refusing each other. Until a usable key is read the speaker sends nothing and takes nothing, and is not ready. The
/// key itself is never logged; its id is.
/// </summary>
public sealed partial class ClusterKey(Func<CancellationToken, Task<V1Secret?>> read, LanTransport transport, Health health, TimeProvider time, ILogger<ClusterKey> logger)
{
    /// <summary>The Secret, in the speakers' namespace.</summary>
    public const string SecretName = Kubernetes.SpeakerKeySecret.Name;

    public const string Gate = "key";

    public static readonly TimeSpan ReadInterval = TimeSpan.FromSeconds(30);

    /// <summary>How long a changed key waits before it signs: every speaker has read it by then.</summary>
    public static readonly TimeSpan SwitchAfter = ReadInterval + TimeSpan.FromSeconds(10);

    // While there is no usable key, ask again soon.
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(2);

    private LanKeys? _newest;
    private LanKeys? _replaced; // what signed before the newest change, while that change is recent
    private long _changedAt;

    /// <summary>The keys to use now, given the newest read: during a change, the old ones sign and both are accepted.</summary>
    internal LanKeys Effective(LanKeys newest)
    {
        var now = time.GetTimestamp();
        if (_newest is null || !_newest.SameAs(newest))
        {
            _replaced = _newest is null ? null : _replaced is { } older && time.GetElapsedTime(_changedAt, now) < SwitchAfter ? older : _newest;
            _newest = newest;
            _changedAt = now;
        }

        var since = time.GetElapsedTime(_changedAt, now);
        if (_replaced is not { } replaced || since >= SwitchAfter * 2)
        {
            _replaced = null;
            return newest;
        }

        return since < SwitchAfter ? LanKeys.Combine(replaced, newest) : LanKeys.Combine(newest, replaced);
    }

    /// <summary>Reads the Secret through the API (null when it does not exist yet).</summary>
    public static Func<CancellationToken, Task<V1Secret?>> From(KubeApi client, string ns) => async cancellationToken =>
    {
        try
        {
            return await client.GetAsync(KubeResources.Secrets, ns, SecretName, cancellationToken: cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    };

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        health.SetReady(Gate, false, $"reading Secret {SecretName}");
        string? loaded = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            var usable = false;
            try
            {
                using var timeout = new CancellationTokenSource(ReadInterval, time);
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                var secret = await read(attempt.Token);
                string? problem = null;
                var keys = secret is null ? null : LanKeys.From(secret.Data?.AsReadOnly() ?? new Dictionary<string, byte[]>().AsReadOnly(), out problem);
                if (keys is null)
                {
                    var why = secret is null ? $"Secret {SecretName} does not exist yet (the controller creates it)" : $"Secret {SecretName} cannot sign: {problem}";
                    health.SetReady(Gate, false, why + ": sending and taking no speaker messages");
                    LogNoKey(why);
                }
                else
                {
                    usable = true;
                    keys = Effective(keys);
                    var ids = string.Join(", ", keys.Ids.Select(LanKeys.Text));
                    var signing = LanKeys.Text(keys.SigningId);
                    transport.Keys = keys;
                    health.SetReady(Gate, true, $"signing with key {signing}; accepting {ids}");
                    if ($"{signing} {ids}" != loaded)
                    {
                        loaded = $"{signing} {ids}";
                        LogKeys(signing, ids);
                    }
                }
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
            {
                // The keys read before go on working: an API outage changes nothing on the wire.
                LogReadFailed(e, SecretName);
                usable = transport.Keys is not null;
            }

            await Task.Delay(usable ? Min(ReadInterval, UntilNextSwitch()) : RetryInterval, time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Until the keys in use change by themselves (a changed key starts signing, or the replaced ones stop being accepted).</summary>
    private TimeSpan UntilNextSwitch()
    {
        if (_replaced is null)
        {
            return ReadInterval;
        }

        var since = time.GetElapsedTime(_changedAt);
        var next = (since < SwitchAfter ? SwitchAfter : SwitchAfter * 2) - since;
        return next > TimeSpan.Zero ? next : TimeSpan.Zero;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    [LoggerMessage(Level = LogLevel.Information, Message = "Speaker messages signed with key {Signing}; keys accepted: {Accepted}")]
    private partial void LogKeys(string signing, string accepted);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No usable cluster key: {Why}")]
    private partial void LogNoKey(string why);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not read Secret {Secret}; the keys read before stay in use")]
    private partial void LogReadFailed(Exception exception, string secret);
}
