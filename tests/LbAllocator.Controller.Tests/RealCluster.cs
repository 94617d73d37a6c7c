using LbAllocator.TestApiServer;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// One real kube-apiserver with our CRDs installed, shared by the test classes of <see cref="RealClusterCollection"/>.
/// They run one after another (a controller watches Services in every namespace, so two tests' controllers must
/// never run at once); each test gets namespaces of its own (<see cref="ControllerFixture.StartAsync(RealCluster)"/>).
/// </summary>
public sealed class RealCluster : IAsyncLifetime
{
    private readonly KubeApiServerFixture _server = new();
    private int _tests;

    public KubeApiServer Server => _server.Server;

    public async Task InitializeAsync()
    {
        await _server.InitializeAsync();
        if (RealApi.SkipReason is not null)
        {
            return;
        }

        await Server.KubectlMustAsync("apply", "-k", Path.Combine(InstallManifests.RepoRoot, "config", "crd"));
        // Created is not served yet: names are accepted (Established) a moment later.
        await Server.KubectlMustAsync("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s");
    }

    /// <summary>A name no other test on this server has used: the stem of the test's namespaces.</summary>
    public string NextTestId() => $"t{Interlocked.Increment(ref _tests)}";

    public Task DisposeAsync() => _server.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class RealClusterCollection : ICollectionFixture<RealCluster>
{
    public const string Name = "real kube-apiserver";
}
