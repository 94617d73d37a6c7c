using System.Net;
using System.Security.Cryptography;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes;

/// <summary>
/// The Secret holding the key the speakers sign their LAN messages with. The controller creates it, with a random
/// key, when it is missing, and never changes it afterwards (a rotation is an operator's edit, see the README); the
/// speakers may read this one Secret and no other.
/// </summary>
public static partial class SpeakerKeySecret
{
    public const string Name = "lballocator-speaker-key";

    /// <summary>The entry whose key signs; every entry's key is accepted.</summary>
    public const string SigningEntry = "key";

    /// <summary>A new Secret with a random 32-byte key.</summary>
    public static V1Secret New(string ns) => new()
    {
        ApiVersion = "v1",
        Kind = "Secret",
        Metadata = new V1ObjectMeta
        {
            Name = Name,
            NamespaceProperty = ns,
            Labels = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "lballocator", ["app.kubernetes.io/component"] = "speaker" },
        },
        Type = "Opaque",
        Data = new Dictionary<string, byte[]> { [SigningEntry] = RandomNumberGenerator.GetBytes(32) },
    };

    /// <summary>Creates the Secret unless it exists, retrying (with backoff, at most a minute apart) until one of the two is true.</summary>
    public static async Task EnsureAsync(KubeApi client, string ns, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                try
                {
                    await client.GetAsync(KubeResources.Secrets, ns, Name, cancellationToken: cancellationToken);
                    return;
                }
                catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
                {
                    await client.CreateAsync(KubeResources.Secrets, ns, New(ns), cancellationToken);
                    LogCreated(logger, ns, Name);
                    return;
                }
            }
            catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.Conflict)
            {
                return; // another replica created it meanwhile
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
            {
                LogFailed(logger, e, ns, Name, backoff);
                await Task.Delay(backoff, time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                backoff = backoff * 2 < TimeSpan.FromMinutes(1) ? backoff * 2 : TimeSpan.FromMinutes(1);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Created Secret {Namespace}/{Secret} with a random key for the speakers' LAN messages")]
    private static partial void LogCreated(ILogger logger, string @namespace, string secret);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not make sure Secret {Namespace}/{Secret} exists; the speakers send nothing until it does. Retrying in {Delay}")]
    private static partial void LogFailed(ILogger logger, Exception exception, string @namespace, string secret, TimeSpan delay);
}
