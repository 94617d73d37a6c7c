using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;

namespace LbAllocator.Kubernetes;

/// <summary>
/// The one place the configuration is built from the caches, for the controller's allocation and status writing
/// and for the speaker alike: pools and advertisements mapped in one order, validated together, a broken pool
/// edit running on its last valid spec (<see cref="PoolHistory"/>). Not thread-safe: one loop builds.
/// </summary>
public sealed class ConfigSource(ResourceCache<V1Alpha1IPAddressPool> pools, ResourceCache<V1Alpha1L2Advertisement> advertisements)
{
    private PoolHistory _history = new();

    /// <summary>The configuration from what the caches hold now (and the last valid specs seen by earlier builds).</summary>
    public ConfigSnapshot Build() =>
        _history.Apply(ObjectMapper.ToPoolSpecs(pools.Items), ObjectMapper.ToAdvertisementSpecs(advertisements.Items));

    /// <summary>Forgets the last valid specs, so a new leader starts from the caches as a new process would.</summary>
    public void ForgetHistory() => _history = new PoolHistory();
}
