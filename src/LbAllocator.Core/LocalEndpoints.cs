namespace LbAllocator.Core;

/// <summary>An endpoint's node and conditions as its EndpointSlice gives them (null: not set).</summary>
public readonly record struct EndpointState(string? Node, bool? Ready, bool? Serving, bool? Terminating)
{
    /// <summary>An unset ready condition means ready (the EndpointSlice API's rule).</summary>
    public bool IsReady => Ready != false;

    /// <summary>Serving but on its way out; an unset serving condition defers to ready.</summary>
    public bool IsServingTerminating => Terminating == true && (Serving ?? IsReady);
}

/// <summary>Where a Service with externalTrafficPolicy Local can take traffic.</summary>
public static class LocalEndpoints
{
    /// <summary>
    /// The nodes with a ready endpoint; when no endpoint is ready anywhere, the nodes with a serving
    /// terminating one, which kube-proxy still sends traffic to then (so a one-replica rollout stays announced
    /// until the new pod is ready).
    /// </summary>
    public static IReadOnlySet<string> Nodes(IEnumerable<EndpointState> endpoints)
    {
        var ready = new HashSet<string>(StringComparer.Ordinal);
        var terminating = new HashSet<string>(StringComparer.Ordinal);
        foreach (var endpoint in endpoints)
        {
            if (string.IsNullOrEmpty(endpoint.Node))
            {
                continue;
            }

            if (endpoint.IsReady)
            {
                ready.Add(endpoint.Node);
            }
            else if (endpoint.IsServingTerminating)
            {
                terminating.Add(endpoint.Node);
            }
        }

        return ready.Count > 0 ? ready : terminating;
    }
}
