namespace LbAllocator.Core;

/// <summary>
/// What the allocator decided for one Service: exactly one of the nested cases. <see cref="Ips"/> and
/// <see cref="Pool"/> are what the Service should show (status and pool annotation); <see cref="Problem"/>
/// is why it is not served as it asks, for the cases that have one.
/// </summary>
public abstract record AllocationOutcome(string Namespace, string Name, IReadOnlyList<Ip> Ips, string? Pool, string? Problem)
{
    public string Key => $"{Namespace}/{Name}";

    /// <summary>Whether the addresses or the pool differ from what the allocator held for the Service before this decision.</summary>
    public bool Changed { get; init; }

    /// <summary>Served: it holds these addresses from this pool, as it asks.</summary>
    public sealed record Assigned(string Namespace, string Name, IReadOnlyList<Ip> Ips, string FromPool)
        : AllocationOutcome(Namespace, Name, Ips, FromPool, Problem: null);

    /// <summary>Waiting for addresses: none could be given, for this reason.</summary>
    public sealed record Pending(string Namespace, string Name, string Reason)
        : AllocationOutcome(Namespace, Name, [], Pool: null, Problem: Reason);

    /// <summary>
    /// The Service's own fields or annotations are invalid (the reason says which): it keeps what it validly
    /// held, possibly nothing, so a typo neither renumbers it nor frees its address for another.
    /// </summary>
    public sealed record KeptInvalid(string Namespace, string Name, IReadOnlyList<Ip> Ips, string? Pool, string Reason)
        : AllocationOutcome(Namespace, Name, Ips, Pool, Problem: Reason);

    /// <summary>
    /// Its namespace is not known yet, so pools' namespace selectors cannot judge it: it keeps what it validly
    /// holds (nobody else may take it meanwhile) and gets nothing new until the namespace is seen.
    /// </summary>
    public sealed record AwaitingNamespace(string Namespace, string Name, IReadOnlyList<Ip> Ips, string? Pool)
        : AllocationOutcome(Namespace, Name, Ips, Pool, Problem: $"namespace \"{Namespace}\" is not known yet");

    /// <summary>No longer ours (its type or class changed): the addresses it held are free again and should leave its status.</summary>
    public sealed record Released(string Namespace, string Name, IReadOnlyList<Ip> Freed)
        : AllocationOutcome(Namespace, Name, [], Pool: null, Problem: null);

    /// <summary>Not ours and holding nothing of ours: left alone.</summary>
    public sealed record NotOurs(string Namespace, string Name)
        : AllocationOutcome(Namespace, Name, [], Pool: null, Problem: null);
}
